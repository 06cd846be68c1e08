"""`streamvln demo`: agent server + embedded simulator driving it over ZMQ + the live web page.

Threads: the agent server (socket + engine threads), the web server, and the episode loop, which
is a client of the agent server exactly like a remote robot would be.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

from agent.serving.client import AgentClient
from agent.serving.engine import SessionEngine
from agent.serving.server import AgentServer, ServerConfig
from envs.task import TaskConfig, VLNTask
from streamvln.demo.config import DemoConfig
from streamvln.demo.driver import EpisodeRun, drive_episode, load_episodes
from streamvln.demo.live import LiveState
from streamvln.demo.web import DemoWebServer

log = logging.getLogger(__name__)
_MAX_CONSECUTIVE_FAILURES = 3


class DemoApp:
    def __init__(self, engine: SessionEngine, config: DemoConfig, notice: str = "") -> None:
        from envs.embedded import EmbeddedBackend, EmbeddedConfig
        from envs.render.topdown import topdown_map

        config.validate()
        self.config = config
        self.state = LiveState(notice=notice, topdown=topdown_map)
        self.server = AgentServer(engine, ServerConfig(bind=config.bind))
        self.web = DemoWebServer(self.state, port=config.port)
        self.backend = EmbeddedBackend(EmbeddedConfig(width=config.width, height=config.height, hfov_deg=config.hfov_deg))
        self.task = VLNTask(self.backend, TaskConfig(max_steps=config.max_steps))
        self.runs: list[EpisodeRun] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start the servers and the episode loop in the background; returns the page URL."""
        episodes, gt = load_episodes(self.config.data_dir, self.config.split, self.config.episodes, self.config.seed)
        endpoint = self.server.start()
        url = self.web.start()
        self._thread = threading.Thread(target=self._loop, args=(endpoint, episodes, gt), name="demo-episodes", daemon=True)
        self._thread.start()
        return url

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the episode loop ends (after `loops` passes, or stop()); True if it did."""
        assert self._thread is not None, "start() first"
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.web.stop()
        self.server.stop()
        self.task.close()

    def _loop(self, endpoint: str, episodes, gt) -> None:
        passes = itertools.count() if self.config.loops == 0 else range(self.config.loops)
        failures = 0  # consecutive failed episodes: give up after a few (e.g. the engine keeps failing)
        with AgentClient(endpoint, timeout_s=120.0) as client:
            for _ in passes:
                for episode in episodes:
                    if self._stop.is_set():
                        return
                    try:
                        run = drive_episode(client, self.task, episode, gt.get(episode.key), session="demo",
                                            observer=self._observe)
                    except Exception as error:
                        if self._stop.is_set():
                            return
                        log.exception("episode %s failed; going on with the next one", episode.episode_id)
                        failures += 1
                        self.state.set_error(f"episode {episode.episode_id} failed: {type(error).__name__}: {error}")
                        if failures >= _MAX_CONSECUTIVE_FAILURES:
                            self.state.set_error(f"demo stopped after {failures} failed episodes: {error}")
                            return
                        continue
                    if failures:
                        failures = 0
                        self.state.set_error("")
                    self.runs.append(run)
                    self.state.finish_episode(run)

    def _observe(self, view) -> None:
        self.state.observe(view, self.backend.house)
        if self._stop.is_set():
            raise InterruptedError("demo stopping")
        if self.config.step_delay_s:
            time.sleep(self.config.step_delay_s)
