"""The demo's episode loop when the engine keeps failing: it says so on the page and stops."""

import pytest

from agent.serving.engine import ScriptedEngine
from streamvln.demo.app import DemoApp, DemoConfig


class BrokenEngine(ScriptedEngine):
    def act(self, requests):
        raise RuntimeError("model weights are corrupt")


def test_demo_reports_failing_episodes_and_stops_after_three():
    app = DemoApp(BrokenEngine(), DemoConfig(port=0, episodes=2, loops=0, step_delay_s=0, width=32, height=32))
    app.start()
    try:
        assert app.wait(120), "the loop should give up on a broken engine"
        state = app.state.snapshot()
        assert state["error"].startswith("demo stopped after 3 failed episodes") and "corrupt" in state["error"]
        assert app.runs == []
    finally:
        app.stop()


def test_demo_config_validation():
    with pytest.raises(ValueError, match="port"):
        DemoConfig(port=70000).validate()
    with pytest.raises(ValueError, match="episodes"):
        DemoConfig(episodes=0).validate()
