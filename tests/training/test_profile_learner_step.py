"""streamvln.benchmarks.profiling (the GPU-busy union, host-sync counts) and scripts/profile_learner_step.py on the
CPU with a tiny learner."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch.autograd import DeviceType

from streamvln.benchmarks.profiling import device_busy_ms, host_sync_counts

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "profile_learner_step.py"


def _event(start_us: float, end_us: float, device=DeviceType.CUDA, name="kernel", cpu_us=0.0):
    return SimpleNamespace(time_range=SimpleNamespace(start=start_us, end=end_us), device_type=device, name=name,
                           cpu_time_total=cpu_us)


def test_busy_time_is_the_union_of_kernel_intervals_over_streams():
    events = [_event(0, 1000), _event(500, 1500),  # overlapping (compute + communication stream): 1.5 ms
              _event(600, 700),  # inside the first two
              _event(3000, 3500),  # after a 1.5 ms gap
              _event(0, 9000, device=DeviceType.CPU)]  # host ops do not count
    assert device_busy_ms(events) == pytest.approx(2.0)
    assert device_busy_ms([]) == 0.0


def test_host_syncs_are_counted_by_op():
    events = [_event(0, 1, DeviceType.CPU, "aten::_local_scalar_dense", 30.0),
              _event(2, 3, DeviceType.CPU, "aten::_local_scalar_dense", 10.0),
              _event(4, 5, DeviceType.CPU, "cudaStreamSynchronize", 500.0),
              _event(6, 7, DeviceType.CPU, "aten::mm", 900.0)]
    assert host_sync_counts(events) == {"aten::_local_scalar_dense": (2, pytest.approx(0.04)),
                                          "cudaStreamSynchronize": (1, pytest.approx(0.5))}


def test_profile_runs_a_tiny_learner_on_the_cpu(tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "rollout"))
    from rollout_fixtures import make_trajectory

    from rollout.store import EpisodeStore, StoreConfig

    store = EpisodeStore(tmp_path / "store", StoreConfig(fsync=False))
    for index in range(4):
        store.add(make_trajectory(num_steps=24, episode_id=f"ep{index}", size=32))
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
model_preset: tiny
tunable_parts: [mm_mlp_adapter, mm_language_model]
bf16: false
steps: 1
micro_batch_size: 1
grad_accum_steps: 2
data: {{num_frames: 4, num_history: 2, num_workers: 0, sources: [{{kind: store, path: {tmp_path / 'store'}, name: nav}}]}}
speed: {{packing: true, attn_implementation: sdpa_varlen, assistant_only_logits: true, gradient_checkpointing: false}}
""")
    command = [sys.executable, str(SCRIPT), "--config", str(config), "--steps", "1", "--warm", "1", "--rows", "5"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "1 rank(s), micro batch 1 x 2 accumulated:" in out and "ms per step (wall)" in out
    assert "GPU busy" not in out  # no device kernels on the CPU
    assert "aten::" in out  # the operator table
