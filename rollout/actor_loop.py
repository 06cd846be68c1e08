"""An actor process: DAgger collection with the newest announced weights, episodes PUSHed to the learner.

Before any weights are announced the actor collects with the expert alone (DAgger iteration 0,
beta 1). Weights v<N> run DAgger iteration N + 1 (beta = p ** (N + 1)): v0 is the learner's starting
model. New weights are picked up between episodes (each env keeps the weights its episode started
with). Policy lag bound: the actor refuses to start episodes while its weights are more than
`max_policy_lag` versions behind the newest announced (e.g. loading failed), and logs it. A "stop"
announcement, SIGTERM or `max_episodes` ends the loop; an episode in progress is dropped, never sent
half-done.

The model is loaded through an injected `load_agent(path) -> StreamingAgent`, so this module does not
import agent/ (the command layer composes them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from envs.episodes.io import Episode
from envs.sensors import SensorConfig
from rollout.actors import ActorStats, DaggerActor, DaggerConfig, episode_cycle, make_tasks
from rollout.curve import CurveClientKeys
from rollout.transport import Announcement, EpisodeSender, SenderConfig, WeightSubscriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorLoopConfig:
    episodes_address: str = "tcp://127.0.0.1:5601"
    weights_address: str = "tcp://127.0.0.1:5602"
    actor_id: str = "actor-0"
    token: str = ""
    num_envs: int = 2
    sensors: SensorConfig = SensorConfig()
    max_steps: int = 500
    dagger_p: float = 0.75
    intervene_after: int | None = None
    intervention_steps: int = 4
    chunk_mixing: bool = True  # DaggerConfig.chunk_mixing (False: per-step beta draws, before issue 8's fix)
    accept_stop_m: float = 0.0  # DaggerConfig.accept_stop_m (0: a policy STOP is always replaced)
    executed_in_context: bool = False  # DaggerConfig.executed_in_context
    max_policy_lag: int = 2
    max_episodes: int | None = None  # stop after sending this many
    wait_weights_s: float = 0.0  # wait this long for a first announcement before expert-only collection
    verify_sha: bool = True
    seed: int = 0
    curve_keys: str | None = None  # CURVE key directory (rollout/curve.py); None: plain tcp
    curve_client: str = "client"  # this actor's key pair name in curve_keys/clients/

    @property
    def curve(self) -> CurveClientKeys | None:
        return CurveClientKeys(self.curve_keys, self.curve_client) if self.curve_keys else None

    def validate(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"ActorLoopConfig.num_envs must be >= 1, got {self.num_envs}")
        self.sensors.validate(where="ActorLoopConfig.sensors")
        if self.max_policy_lag < 0:
            raise ValueError(f"ActorLoopConfig.max_policy_lag must be >= 0, got {self.max_policy_lag}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"ActorLoopConfig.max_episodes must be >= 1 or None, got {self.max_episodes}")
        if not isinstance(self.chunk_mixing, bool):
            raise ValueError(f"ActorLoopConfig.chunk_mixing must be a bool, got {self.chunk_mixing!r}")
        self.dagger(0).validate()

    def dagger(self, iteration: int) -> DaggerConfig:
        return DaggerConfig(self.dagger_p, iteration, self.intervene_after, self.intervention_steps, self.seed,
                            chunk_mixing=self.chunk_mixing, accept_stop_m=self.accept_stop_m,
                            executed_in_context=self.executed_in_context)


AgentLoader = Callable[[str], object]


class ActorLoop:
    def __init__(self, config: ActorLoopConfig, episodes: list[Episode], load_agent: AgentLoader,
                 verify: Callable[[str, str], None] | None = None):
        config.validate()
        self.config = config
        self.load_agent = load_agent
        self.verify = verify
        self.sender = EpisodeSender(SenderConfig(config.episodes_address, config.actor_id, config.token,
                                                 curve=config.curve))
        self.subscriber = WeightSubscriber(config.weights_address, curve=config.curve)
        sensors = config.sensors
        tasks = make_tasks(config.num_envs, sensors.width, sensors.height, sensors.hfov_deg, config.max_steps)
        self.actor = DaggerActor(tasks, None, config.dagger(0), policy_version=0)
        self.episodes = episodes
        self.loaded_version = -1
        self.newest_seen = -1
        self.stopped = False
        self.sent = 0
        self.refused = 0
        self.stop_requested: Callable[[], bool] = lambda: False
        self._last_poll = 0.0

    def run(self) -> ActorStats:
        first = self._wait_first_weights()
        if first is not None:
            self._apply(first)
        try:
            self.actor.run(self._episodes(), self._send, should_stop=self._should_stop)
        finally:
            self.sender.close()
            self.subscriber.close()
        return self.actor.stats

    def _wait_first_weights(self) -> Announcement | None:
        """Up to wait_weights_s for a first announcement; a stop request (signal) ends the wait."""
        deadline = time.monotonic() + self.config.wait_weights_s
        while time.monotonic() < deadline and not (self.stopped or self.stop_requested()):
            announcement = self.subscriber.poll(200)
            if announcement is not None:
                return announcement
        return None

    def _should_stop(self) -> bool:
        """Checked every step: a signal, or a stop announcement (polled at most once a second)."""
        now = time.monotonic()
        if not self.stopped and now - self._last_poll > 1.0:
            self._last_poll = now
            self._poll_weights()
        return self.stopped or self.stop_requested()

    def _episodes(self) -> Iterator[Episode]:
        """The endless episode cycle; new weights are applied (and lag checked) before each episode."""
        for episode in episode_cycle(self.episodes, self.config.seed):
            self._poll_weights()
            while not self._should_stop() and self.newest_seen - self.loaded_version > self.config.max_policy_lag:
                self.refused += 1
                log.warning("actor %s: weights v%d are more than %d versions behind v%d; refusing to collect",
                            self.config.actor_id, self.loaded_version, self.config.max_policy_lag, self.newest_seen)
                time.sleep(1.0)
                self._poll_weights()
            if self._should_stop():
                return
            yield episode

    def _poll_weights(self) -> None:
        announcement = self.subscriber.poll(0)
        if announcement is not None:
            self._apply(announcement)

    def _apply(self, announcement: Announcement) -> None:
        if announcement.stop:
            log.info("actor %s: stop announced", self.config.actor_id)
            self.stopped = True
            return
        self.newest_seen = max(self.newest_seen, announcement.version)
        if announcement.version <= self.loaded_version:
            return
        try:
            if self.verify is not None and self.config.verify_sha:
                self.verify(announcement.path, announcement.sha256)
            agent = self.load_agent(announcement.path)
        except (OSError, ValueError) as error:
            log.warning("actor %s: cannot load weights v%d from %s: %s", self.config.actor_id,
                        announcement.version, announcement.path, error)
            return
        self.loaded_version = announcement.version
        self.actor.set_policy(agent, announcement.version, self.config.dagger(announcement.version + 1))
        log.info("actor %s: loaded weights v%d (beta %.3f)", self.config.actor_id, announcement.version,
                 self.actor.config.beta)

    def _send(self, trajectory) -> None:
        if self.sender.send(trajectory, abort=self._should_stop):
            self.sent += 1
        if self.config.max_episodes is not None and self.sent >= self.config.max_episodes:
            self.stopped = True
