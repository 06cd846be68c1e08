"""The live demo: episodes run through the ZMQ server and a headless Chromium sees frames advance."""

import json
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from agent.serving.engine import ScriptedEngine
from streamvln.demo.app import DemoApp, DemoConfig

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def demo():
    apps = []

    def start(**overrides):
        config = DemoConfig(port=0, episodes=2, step_delay_s=0.02, max_steps=60, width=96, height=96, **overrides)
        app = DemoApp(ScriptedEngine(), config, notice="random weights: test engine")
        apps.append(app)
        return app, app.start()

    yield start
    for app in apps:
        app.stop()


def _wait_for_frames(app, count, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while app.state.snapshot()["frame"] < count:
        assert time.monotonic() < deadline, "the demo produced no frames"
        time.sleep(0.05)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


@pytest.mark.slow
def test_demo_runs_episodes_through_the_server_and_serves_state_and_images(demo):
    app, url = demo(loops=1)
    assert app.wait(120), "two 60-step episodes should finish"
    assert len(app.runs) == 2 and all(run.calls and "SR" in run.metrics for run in app.runs)
    assert all(call.actions for run in app.runs for call in run.calls)
    status, kind, body = _get(url + "state.json")
    state = json.loads(body)
    assert state["episodes_done"] == 2 and state["notice"].startswith("random weights")
    assert state["frame"] > 2 and state["instruction"] and set(state["summary"]) >= {"SR", "SPL", "nDTW"}
    for name in ("rgb", "depth", "map"):
        status, kind, body = _get(f"{url}{name}.jpg?frame={state['frame']}")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, kind, body = _get(url)
    assert b'id="frame"' in body and b"/state.json" in body


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (apt-get install -y chromium)")
def test_page_in_headless_chromium_shows_advancing_frames(demo, tmp_path):
    app, url = demo(loops=0)
    _wait_for_frames(app, 3)
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path}", "--virtual-time-budget=6000", "--dump-dom", url]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    shown = re.search(r'id="frame">(\d+)<', dom)
    assert shown and int(shown.group(1)) > 0, dom[:2000]
    assert "random weights" in dom and re.search(r'id="instruction">[^<]{10,}<', dom)
    seen = app.state.seen_frames  # the page reports each frame it displayed (beacons may race)
    assert len(set(seen)) >= 3, seen
