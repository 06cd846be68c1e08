"""`streamvln serve`: the agent over ZMQ; `streamvln serve keygen DIR`: CURVE keys for remote clients."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamvln import cli_defaults
from streamvln.demo.engines import add_engine_arguments, build_engine, engine_choice

if TYPE_CHECKING:
    from agent.serving.server import ServerConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the streaming agent over ZMQ (msgpack protocol)")
    add_engine_arguments(parser)
    add_server_arguments(parser)
    parser.set_defaults(handler=run_serve)
    tools = parser.add_subparsers(dest="serve_tool")
    keygen = tools.add_parser("keygen", help="write CURVE keys: a server pair and client pairs, clients authorized")
    keygen.add_argument("directory", type=Path)
    keygen.add_argument("--clients", nargs="+", default=["client"], help="client names (one key pair each)")
    keygen.set_defaults(handler=run_keygen)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--bind", default=cli_defaults.DEFAULT_BIND,
                       help=f"ZMQ endpoint (default {cli_defaults.DEFAULT_BIND})")
    group.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    group.add_argument("--curve-keys", type=Path, help="CURVE key directory (from `serve keygen`): authenticate clients")
    group.add_argument("--max-sessions", type=int, default=cli_defaults.SERVER_MAX_SESSIONS)
    group.add_argument("--idle-timeout", type=float, default=cli_defaults.SERVER_IDLE_TIMEOUT_S, help="seconds before an unused session is closed")
    group.add_argument("--request-timeout", type=float, default=cli_defaults.SERVER_REQUEST_TIMEOUT_S,
                       help="seconds a request may wait for the engine")


def server_config(args: argparse.Namespace) -> ServerConfig:
    from agent.serving.server import ServerConfig

    config = ServerConfig(bind=args.bind, allow_remote=args.allow_remote, max_sessions=args.max_sessions,
                          idle_timeout_s=args.idle_timeout, request_timeout_s=args.request_timeout,
                          curve_keys_dir=args.curve_keys)
    config.validate()
    return config


def run_serve(args: argparse.Namespace) -> int:
    from agent.serving.server import AgentServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = server_config(args)
    engine, notice = build_engine(engine_choice(args))
    if notice:
        print(f"NOTICE: {notice}", file=sys.stderr)
    server = AgentServer(engine, config)
    endpoint = server.start()
    print(f"serving on {endpoint} (model version {engine.model_version}, Ctrl-C to stop)", flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.request_stop())
    while not server.wait(0.5):  # wake regularly so the signal handler runs promptly
        pass
    server.stop()
    print("server stopped", flush=True)
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from agent.serving.auth import generate_keys

    written = generate_keys(args.directory, clients=tuple(args.clients))
    print(f"server keys in {args.directory}; give each client its clients/NAME.key_secret and server.key:")
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0
