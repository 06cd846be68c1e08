"""`streamvln demo`: the embedded simulator drives the agent through the ZMQ server, live in a web page."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from streamvln.demo.config import DemoConfig
from streamvln.demo.engines import add_engine_arguments, build_engine, engine_choice


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="live demo: simulator -> ZMQ agent server, shown on http://127.0.0.1:PORT")
    add_engine_arguments(parser)
    defaults = DemoConfig()
    parser.add_argument("--port", type=int, default=defaults.port, help="web page port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--data", help="R2R-CE episode directory; default: generate procedural episodes")
    parser.add_argument("--split", default=defaults.split)
    parser.add_argument("--episodes", type=int, default=defaults.episodes, help="episodes to cycle through")
    parser.add_argument("--loops", type=int, default=defaults.loops, help="passes over the episodes (0: until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--step-delay", type=float, default=defaults.step_delay_s, help="seconds between env steps")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--hfov", type=float, default=defaults.hfov_deg)
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from streamvln.demo.app import DemoApp

    config = DemoConfig(port=args.port, data_dir=args.data, split=args.split, episodes=args.episodes, loops=args.loops,
                        seed=args.seed, step_delay_s=args.step_delay, max_steps=args.max_steps, width=args.width,
                        height=args.height, hfov_deg=args.hfov)
    config.validate()
    engine, notice = build_engine(engine_choice(args))
    if notice:
        print(f"NOTICE: {notice}", file=sys.stderr)
    app = DemoApp(engine, config, notice=notice)
    url = app.start()
    print(f"live demo on {url} (agent server {app.server.endpoint}); Ctrl-C to stop", flush=True)
    interrupted = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: interrupted.set())
    while not interrupted.is_set() and not app.wait(0.5):
        pass
    app.stop()
    summary = app.state.snapshot().get("summary") or {}
    print(f"{len(app.runs)} episodes; " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items() if v is not None), flush=True)
    return 0
