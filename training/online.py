"""The learner's online loop: train on a growing episode store, publish versioned weights.

    OnlineLearner(train_config, OnlineConfig(...)).run()

- A background thread owns the ZMQ sockets: it PULLs finished episodes from actors (rollout.transport
  rejects unknown senders, stale policy versions, duplicates, invalid episodes), commits each to the
  durable store, and PUBlishes weight announcements (repeated every second for late subscribers).
- Training starts once the store holds `min_episodes`; the data stream re-reads the store every
  `data.refresh_every` batches, so new episodes join the mix (with QA sources as configured).
- The time blocked on data is measured (training/data_wait.py): `data_wait_frac` per logged step in
  TensorBoard / metrics.jsonl, totals in OnlineResult.data_wait and <out_dir>/online_stats.json.
- Every `publish_every` optimizer steps the model is exported atomically to <run>/weights/v<N>/
  (save_pretrained into a temp folder, then rename) and announced as {version, path, sha256}.
  Version 0 is the starting model (published before waiting for data, so actors can begin DAgger). Episodes collected with
  weights older than newest - max_policy_lag are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.data_wait import DataWaitLogger, DataWaitTotals, TimedBatches

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
LATEST_FILE = "latest.json"


@dataclass
class OnlineConfig:
    store: str = "runs/online/store"
    episodes_address: str = "tcp://127.0.0.1:5601"  # PULL bind (actors connect their PUSH here)
    weights_address: str = "tcp://127.0.0.1:5602"  # PUB bind (actors subscribe)
    token: str = ""  # shared secret of this run's actors
    allowed_senders: list[str] | None = None
    min_episodes: int = 1  # training starts when the store holds this many
    publish_every: int = 50  # optimizer steps between weight versions
    max_policy_lag: int = 2  # versions an episode's weights may be behind the newest
    keep_versions: int = 3  # weight folders kept on disk (the newest ones)
    wait_timeout_s: float = 3600.0  # for min_episodes
    refresh_every: int = 10  # batches between store re-reads
    curve_keys: str | None = None  # CURVE key directory (rollout/curve.py): only authorized actors connect

    def validate(self) -> None:
        for name in ("min_episodes", "publish_every", "keep_versions", "refresh_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"OnlineConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_policy_lag < 0:
            raise ValueError(f"OnlineConfig.max_policy_lag must be >= 0, got {self.max_policy_lag}")
        if self.wait_timeout_s <= 0:
            raise ValueError(f"OnlineConfig.wait_timeout_s must be > 0, got {self.wait_timeout_s}")


# ---------------------------------------------------------------------- weight versions on disk
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_weights(learner, weights_root: str | Path, version: int, keep: int = 3) -> tuple[Path, str]:
    """Export the learner's model as weights_root/v<version> atomically; returns (path, sha256)."""
    tmp = _temp_folder(weights_root, version)
    learner.export(tmp)
    if learner.rank != 0:
        return Path(weights_root) / f"v{version:06d}", ""
    write_window_settings(tmp, learner.config)
    return _commit(tmp, Path(weights_root), version, learner.step, keep)


def publish_folder(source: str | Path, weights_root: str | Path, version: int, keep: int = 3) -> tuple[Path, str]:
    """Publish an existing save_pretrained folder (the starting model) as weights_root/v<version>."""
    source = Path(source)
    if not (source / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{source} holds no {WEIGHTS_FILE} to publish")
    tmp = _temp_folder(weights_root, version)
    shutil.copytree(source, tmp)
    return _commit(tmp, Path(weights_root), version, 0, keep)


def _temp_folder(weights_root: str | Path, version: int) -> Path:
    tmp = Path(weights_root) / f".v{version:06d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def _commit(tmp: Path, root: Path, version: int, step: int, keep: int) -> tuple[Path, str]:
    """Checksum, rename into place (readers never see a partial folder), update latest.json, prune."""
    final = root / f"v{version:06d}"
    sha = file_sha256(tmp / WEIGHTS_FILE)
    (tmp / "version.json").write_text(json.dumps({"version": version, "sha256": sha, "step": step}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = root / (LATEST_FILE + ".tmp")
    latest_tmp.write_text(json.dumps({"version": version, "path": str(final), "sha256": sha}))
    os.replace(latest_tmp, root / LATEST_FILE)
    for old in sorted(root.glob("v[0-9]*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final, sha


WINDOW_FILE = "sample_window.json"


def write_window_settings(directory: Path, config: TrainConfig) -> None:
    """The sample window the model was trained with, so the streaming agent runs the same one."""
    data = config.data
    settings = {"num_frames": data.num_frames, "num_future_steps": data.num_future_steps,
                "num_history": data.num_history}
    (Path(directory) / WINDOW_FILE).write_text(json.dumps(settings))


def latest_weights(weights_root: str | Path) -> dict[str, Any] | None:
    """{version, path, sha256} of the newest published weights, or None."""
    path = Path(weights_root) / LATEST_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def verify_weights(path: str | Path, sha256: str) -> None:
    """Raise ValueError when the folder's weights do not match the announced checksum."""
    actual = file_sha256(Path(path) / WEIGHTS_FILE)
    if actual != sha256:
        raise ValueError(f"weights {path}: sha256 {actual[:12]} does not match the announced {sha256[:12]}")


# ---------------------------------------------------------------------- the transport thread
@dataclass
class _Shared:
    """State the training thread and the transport thread share (ints and a list: GIL-atomic)."""

    newest_version: int = -1
    announcements: list[tuple[int, str, str]] = field(default_factory=list)
    stop_actors: bool = False
    addresses: dict[str, str] = field(default_factory=dict)
    ingested: int = 0


class TransportThread(threading.Thread):
    """Owns the PULL and PUB sockets: commits received episodes, sends announcements."""

    def __init__(self, config: OnlineConfig, store, shared: _Shared):
        super().__init__(name="online-transport", daemon=True)
        self.config, self.store, self.shared = config, store, shared
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.receiver_stats = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from rollout.transport import EpisodeReceiver, ReceiverConfig, WeightPublisher

        cfg = self.config
        allowed = frozenset(cfg.allowed_senders) if cfg.allowed_senders is not None else None
        context, curve = self._security()
        try:
            receiver = EpisodeReceiver(ReceiverConfig(cfg.episodes_address, cfg.token, allowed, cfg.max_policy_lag),
                                       newest_version=lambda: max(self.shared.newest_version, 0),
                                       context=context, curve=curve)
            publisher = WeightPublisher(cfg.weights_address, context=context, curve=curve)
        except Exception as error:  # a taken port: report it to the training thread
            self.error = error
            self.ready.set()
            if curve is not None:
                curve.stop()
            return
        self.receiver_stats = receiver.stats
        self.shared.addresses = {"episodes": receiver.address, "weights": publisher.address}
        self.ready.set()
        last_beat = 0.0
        try:
            while not self.stopping.is_set():
                for received in receiver.poll(timeout_ms=100):
                    try:
                        self.store.add(received.trajectory)
                    except (OSError, ValueError) as error:  # e.g. disk full: keep serving, say why
                        log.error("could not commit episode seq %d of %s: %s", received.seq, received.sender, error)
                        continue
                    self.shared.ingested += 1
                while self.shared.announcements:
                    publisher.announce(*self.shared.announcements.pop(0))
                if time.monotonic() - last_beat > 1.0:
                    if self.shared.stop_actors:
                        publisher.stop()
                    else:
                        publisher.heartbeat()
                    last_beat = time.monotonic()
        finally:
            if self.shared.stop_actors:
                publisher.stop()
            receiver.close()
            publisher.close()
            if curve is not None:
                curve.stop()

    def _security(self):
        """(context, CurveServer or None): CURVE sockets get their own context with a ZAP authenticator."""
        import zmq

        from agent.serving.server import is_local_endpoint
        from rollout.curve import CurveServer

        cfg = self.config
        if cfg.curve_keys is None:
            for address in (cfg.episodes_address, cfg.weights_address):
                if not is_local_endpoint(address):
                    log.warning("online learner binds %s without CURVE keys: any host that reaches it can "
                                "connect (the run token is sent in clear)", address)
            return None, None
        context = zmq.Context()
        return context, CurveServer(cfg.curve_keys, context)


# ---------------------------------------------------------------------- the online learner
@dataclass
class OnlineResult:
    steps: int
    versions: int
    episodes_ingested: int
    rejected: dict[str, int]
    last_scalars: dict[str, float]
    final_weights: Path | None
    data_wait: dict[str, float] = field(default_factory=dict)  # DataWaitTotals.as_dict()

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "versions": self.versions, "episodes": self.episodes_ingested,
                "rejected": self.rejected, "weights": str(self.final_weights), "data_wait": self.data_wait}


class StopRequested(Exception):
    """The online learner was asked to stop (a signal) before training began."""


class OnlineLearner:
    def __init__(self, train_config: TrainConfig, online: OnlineConfig, resume: bool = False):
        online.validate()
        self.online = online
        data = dataclasses.replace(train_config.data, refresh_every=online.refresh_every)
        self.train_config = dataclasses.replace(train_config, publish_every=online.publish_every, data=data)
        self.resume = resume
        self.out_dir = Path(self.train_config.out_dir)
        self.weights_root = self.out_dir / "weights"
        self.shared = _Shared()
        self.learner = None
        self.last_published: Path | None = None
        self.wait_totals = DataWaitTotals()
        self.stop_event = threading.Event()  # set (e.g. by a signal handler) to abort the wait for data

    @property
    def addresses(self) -> dict[str, str]:
        return dict(self.shared.addresses)

    def start_transport(self):
        """Bind the sockets and start ingesting (call before spawning actors to learn the ports)."""
        from rollout.store import EpisodeStore

        self.store = EpisodeStore(self.online.store)
        self.store.remove_orphans()
        self.thread = TransportThread(self.online, self.store, self.shared)
        self.thread.start()
        self.thread.ready.wait()
        if self.thread.error is not None:
            raise ValueError(f"online learner: cannot bind its sockets: {self.thread.error}")
        previous = latest_weights(self.weights_root)
        if previous is not None:  # a restarted learner continues the version sequence
            self.shared.newest_version = int(previous["version"])
        return self.addresses

    def wait_for_data(self) -> None:
        started = time.monotonic()
        deadline = started + self.online.wait_timeout_s
        while len(self.store) < self.online.min_episodes:
            if self.stop_event.is_set():
                raise StopRequested("online learner: stopped while waiting for the store minimum")
            if time.monotonic() > deadline:
                raise TimeoutError(f"online learner: store {self.store.root} holds {len(self.store)} episodes "
                                   f"after {self.online.wait_timeout_s:.0f} s, need {self.online.min_episodes}")
            time.sleep(0.5)
        self.wait_totals.startup_wait_s += time.monotonic() - started

    def run(self) -> OnlineResult:
        from training.checkpoint import latest_checkpoint
        from training.run import build_learner

        if not hasattr(self, "thread"):
            self.start_transport()
        try:
            if self.shared.newest_version < 0 and self.train_config.model_path:
                self._announce(*publish_folder(self.train_config.model_path, self.weights_root, 0,
                                               self.online.keep_versions), version=0)
            self.wait_for_data()
            self.learner = build_learner(self.train_config, on_publish=self._on_publish)
            timed = TimedBatches(self.learner.batches, self.wait_totals)
            self.learner.batches, self.learner.logger = timed, DataWaitLogger(self.learner.logger, timed)
            if self.resume and latest_checkpoint(self.out_dir / "checkpoints") is not None:
                self.learner.load_checkpoint()
                log.info("online learner resumed at step %d", self.learner.step)
            if self.shared.newest_version < 0:
                self._publish()  # version 0: the starting weights, so actors can begin DAgger
            scalars = self.learner.train()
            timed.finish()
            published_last_step = self.learner.step % self.train_config.publish_every == 0
            final = self.last_published if published_last_step else self._publish()
        finally:
            self.stop()
        stats = self.thread.receiver_stats
        result = OnlineResult(self.learner.step, self.shared.newest_version + 1, self.shared.ingested,
                              dict(stats.rejected) if stats else {}, scalars, final, self.wait_totals.as_dict())
        if self.learner.rank == 0:
            (self.out_dir / "online_stats.json").write_text(json.dumps(result.as_dict(), indent=1))
        log.info("online learner: data wait %.1f%% of %.1f s training (startup wait %.1f s)",
                 100 * self.wait_totals.data_wait_frac, self.wait_totals.train_s, self.wait_totals.startup_wait_s)
        return result

    def _on_publish(self, step: int, model) -> None:
        del step, model  # the learner exports its own (possibly ZeRO-3 partitioned) model
        self._publish()

    def _publish(self) -> Path:
        version = self.shared.newest_version + 1
        path, sha = publish_weights(self.learner, self.weights_root, version, self.online.keep_versions)
        return self._announce(path, sha, version)

    def _announce(self, path: Path, sha: str, version: int) -> Path:
        self.last_published = path
        self.shared.newest_version = version
        self.shared.announcements.append((version, str(path.resolve()), sha))
        log.info("published weights v%d -> %s", version, path)
        return path

    def stop(self) -> None:
        """Tell actors to stop (a few heartbeats) and close the sockets."""
        if not hasattr(self, "thread") or not self.thread.is_alive():
            return
        self.shared.stop_actors = True
        time.sleep(1.2)
        self.thread.stopping.set()
        self.thread.join(timeout=10)
