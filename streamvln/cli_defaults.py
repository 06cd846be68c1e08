"""Argument defaults and choices the CLI needs while it builds its parser.

Each value mirrors a source of truth (named in its comment) that lives in a module importing numpy,
numba, scikit-fmm, transformers or zmq. Building the parser must import none of those: it would
make every `streamvln ...` start slowly, and break commands on machines that lack some of them
(the GPU machine has torch but not numba). tests/test_cli_imports.py checks that every value here
still equals its source of truth, so a changed default fails a test instead of drifting.
"""

from __future__ import annotations

# sorted(envs.episodes.generator.SPLIT_HOUSE_SEEDS)
SPLITS = ("test", "train", "val_seen", "val_unseen")
# envs.episodes.generator.GeneratorConfig
EPISODES_PER_HOUSE = 10
MIN_GEODESIC_M = 4.0
MAX_GEODESIC_M = 16.0

# sorted(envs.policies.POLICY_FACTORIES)
POLICY_NAMES = ("expert", "forward", "random", "replay")
# envs.task.TaskConfig.max_steps
TASK_MAX_STEPS = 500
# envs.metrics.SUCCESS_DISTANCE_M (= envs.task.TaskConfig.success_distance)
SUCCESS_DISTANCE_M = 3.0

# agent.serving.server.DEFAULT_BIND
DEFAULT_BIND = "tcp://127.0.0.1:5555"
# agent.serving.server.ServerConfig
SERVER_MAX_SESSIONS = 16
SERVER_IDLE_TIMEOUT_S = 300.0
SERVER_REQUEST_TIMEOUT_S = 10.0

# rollout.samples.SampleConfig
SAMPLE_NUM_FRAMES = 32
SAMPLE_NUM_FUTURE_STEPS = 4
SAMPLE_NUM_HISTORY = 8

# sorted(agent.config.PRESETS)
MODEL_PRESETS = ("1.5b", "7b", "mini", "small", "tiny")
# agent.config.TUNABLE_PARTS (order kept: it is the default of `bench model --tunable`)
TUNABLE_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model")
