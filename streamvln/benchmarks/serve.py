"""`streamvln bench serve`: round-trip latency and throughput of the real agent server over loopback.

The server runs as a separate process (`streamvln serve ...`, so the client does not share its
GIL); the benchmark is its client. Server overhead = round trip - the model time the server reports.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and zmq are imported where used: `streamvln --help` stays fast
    import numpy as np

NAME = "serve"
HELP = "agent server round trip (224 px JPEG) and requests/s with concurrent sessions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=300, help="round trips per measurement")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent sessions for the throughput run")
    parser.add_argument("--agent", action="store_true", help="also measure the real streaming agent")
    parser.add_argument("--checkpoint", help="model directory for --agent (default: --preset random weights)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")


def run(args: argparse.Namespace) -> dict:
    from agent.serving.protocol import encode_frame

    if args.frames < 10 or args.sessions < 1 or args.size < 8:
        raise ValueError("bench serve needs --frames >= 10, --sessions >= 1, --size >= 8")
    frame = test_frame(args.size)
    result = {"frame_px": args.size, "frames": args.frames, "jpeg_bytes": len(encode_frame(frame)["data"])}
    with ServerProcess(["--scripted"]) as server:
        result["scripted"] = {
            "jpeg": round_trips(server.endpoint, frame, args.frames, jpeg=True),
            "raw": round_trips(server.endpoint, frame, args.frames, jpeg=False),
            "concurrent": concurrent(server.endpoint, frame, args.sessions, args.frames),
        }
    if args.agent:
        engine_args = ["--device", args.device, "--dtype", args.dtype]
        engine_args += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--preset", args.preset]
        steps = max(10, args.frames // 5)
        try:
            with ServerProcess(engine_args, start_timeout_s=600) as server:
                result["agent"] = {"engine": " ".join(engine_args),
                                   "jpeg": round_trips(server.endpoint, frame, steps, jpeg=True),
                                   "concurrent": concurrent(server.endpoint, frame, args.sessions, steps),
                                   "single_session": concurrent(server.endpoint, frame, 1, steps)}
        except RuntimeError as error:
            result["agent"] = {"skipped": str(error)}
    return result


def test_frame(size: int) -> np.ndarray:
    """A smooth frame with a few edges (JPEG-compresses like a rendered view, unlike noise)."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rgb = np.stack([200 * x + 30, 160 * y + 40, 120 + 60 * np.sin(6 * x + 3 * y)], axis=-1)
    rgb[size // 3: size // 2, size // 4: size // 2] = (180, 40, 40)
    return rgb.clip(0, 255).astype(np.uint8)


def _summary(values_ms: list[float], prefix: str) -> dict[str, float]:
    import numpy as np

    values = np.asarray(values_ms)
    return {f"{prefix}_median_ms": float(np.median(values)), f"{prefix}_p90_ms": float(np.percentile(values, 90)),
            f"{prefix}_p99_ms": float(np.percentile(values, 99)), f"{prefix}_mean_ms": float(values.mean())}


def round_trips(endpoint: str, frame: np.ndarray, count: int, jpeg: bool) -> dict:
    """One session; the frame is encoded before timing (encode time reported separately)."""
    import numpy as np

    from agent.serving.client import AgentClient
    from agent.serving.protocol import encode_frame

    with AgentClient(endpoint, timeout_s=120) as client:
        client.reset("bench", "walk forward and stop at the red sofa")
        start = time.perf_counter()
        encoded = encode_frame(frame, jpeg=jpeg)
        encode_ms = (time.perf_counter() - start) * 1000.0
        for _ in range(5):  # warm-up
            client.request("act", "bench", frame=encoded)
        trips, models, servers, decodes = [], [], [], []
        for _ in range(count):
            start = time.perf_counter()
            reply = client.request("act", "bench", frame=encoded)
            trips.append((time.perf_counter() - start) * 1000.0)
            models.append(reply.timings_ms.get("model", 0.0))
            servers.append(reply.timings_ms.get("server", 0.0))
            decodes.append(reply.timings_ms.get("decode", 0.0))
    overhead = [t - m for t, m in zip(trips, models)]
    return {"client_encode_ms": encode_ms, **_summary(trips, "round_trip"), **_summary(overhead, "overhead"),
            "model_median_ms": float(np.median(models)), "server_median_ms": float(np.median(servers)),
            "decode_median_ms": float(np.median(decodes))}


def concurrent(endpoint: str, frame: np.ndarray, sessions: int, count_per_session: int) -> dict:
    """`sessions` clients (threads) each send `count_per_session` frames as fast as replies come."""
    import numpy as np

    from agent.serving.client import AgentClient
    from agent.serving.protocol import encode_frame

    encoded = encode_frame(frame, jpeg=True)
    latencies: list[float] = []
    actions = [0]
    batch_sizes: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(sessions + 1)

    def session(index: int) -> None:
        with AgentClient(endpoint, timeout_s=300) as client:
            client.reset(f"s{index}", "go to the kitchen")
            barrier.wait()
            for _ in range(count_per_session):
                start = time.perf_counter()
                reply = client.request("act", f"s{index}", frame=encoded)
                with lock:
                    latencies.append((time.perf_counter() - start) * 1000.0)
                    actions[0] += len(reply.actions)
                    batch_sizes.append(reply.extra.get("batch_size", 1))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"sessions": sessions, "requests_per_s": len(latencies) / elapsed, "actions_per_s": actions[0] / elapsed,
            "mean_batch_size": float(np.mean(batch_sizes)), **_summary(latencies, "latency")}


class ServerProcess:
    """`streamvln serve ENGINE_ARGS --bind tcp://127.0.0.1:*` in a subprocess; stopped with SIGINT."""

    def __init__(self, engine_args: list[str], start_timeout_s: float = 120.0) -> None:
        self.command = [sys.executable, "-m", "streamvln.cli", "serve", *engine_args, "--bind", "tcp://127.0.0.1:*",
                        "--max-sessions", "64"]
        self.start_timeout_s = start_timeout_s
        self.endpoint = ""

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines: list[str] = []
        timer = threading.Timer(self.start_timeout_s, self.process.kill)
        timer.start()
        try:
            for line in self.process.stdout:
                lines.append(line.rstrip())
                if line.startswith("serving on "):
                    self.endpoint = line.split()[2]
                    break
        finally:
            timer.cancel()
        if not self.endpoint:
            self.process.kill()
            raise RuntimeError(f"`{' '.join(self.command[2:])}` did not start: " + " | ".join(lines[-5:]))
        # Keep draining the server's log so it never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        for _ in self.process.stdout:
            pass

    def __exit__(self, *exc_info) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
