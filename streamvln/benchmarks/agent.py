"""`streamvln bench agent`: latency per model call of the streaming agent against the original
StreamVLN scheme and a full recompute (same weights, one run), the streaming-vs-recompute logit
difference over a run that crosses a window boundary, and batched sessions' actions/s.

Random weights decode `full_chunks` (exactly num_future_steps non-STOP actions per call), so every
call does the work of a trained model's 4-action answer and the episode has steps/4 calls.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the agent are imported where used: `streamvln --help` stays fast
    import numpy as np

    from agent.streaming import StreamingAgent

NAME = "agent"
HELP = "streaming agent latency per call by cache scheme, logit check, batched sessions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="model preset, random weights (tiny, small, 1.5b, 7b)")
    parser.add_argument("--steps", type=int, default=200, help="env steps per episode (4 actions per call)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--frame-size", type=int, default=None, help="frame side in px (default: the model's)")
    parser.add_argument("--sessions", type=int, default=8, help="sessions for the batched measurement")
    parser.add_argument("--batch-steps", type=int, default=64, help="env steps per session when batched")
    parser.add_argument("--warmup-calls", type=int, default=None,
                        help="untimed calls first (default: one window + 1, so boundary paths are warm too)")
    parser.add_argument("--schemes", default="streaming,original,recompute",
                        help="comma-separated subset of streaming, original, recompute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--prefetch", choices=("on", "off"), default="on",
                        help="streaming: prefill the next window's prefix + memory after a call (timed apart)")
    parser.add_argument("--decode-graph", choices=("auto", "on", "off"), default="auto",
                        help="decode steps + vision tower as CUDA graphs (auto: on for cuda)")
    parser.add_argument("--sequential-baseline", choices=("on", "off"), default="on",
                        help="also time the batched sessions one call at a time (the equal-work baseline)")
    parser.add_argument("--gqa-attention", choices=("on", "off"), default="on",
                        help="masked attention without per-head K/V copies (off: transformers' SDPA)")
    parser.add_argument("--floor", choices=("auto", "on", "off"), default="auto",
                        help="measure the weight-read floor of a call (auto: on for cuda): decoder bytes, "
                             "copy bandwidth, one M=1 pass over every linear weight, one graphed decode step")
    parser.add_argument("--only", choices=("all", "batched"), default="all",
                        help="batched: only the batched-sessions throughput (no schemes, no logit check)")
    parser.add_argument("--decoding", default="speculative",
                        help="comma-separated greedy, speculative, tree: each is measured over every scheme (the "
                             "recompute baseline decodes the same way); the first one's numbers are also top-level")
    parser.add_argument("--draft", choices=("repeat_last", "previous"), default="repeat_last",
                        help="speculative drafts: the last action repeated, or the previous call's actions")
    parser.add_argument("--checkpoint", default=None,
                        help="a save_pretrained folder to measure instead of --preset's random weights")
    parser.add_argument("--nav-episodes", type=int, default=0,
                        help="with --checkpoint: also run this many simulated val_unseen episodes greedy, "
                             "speculative and tree (natural decoding, no full chunks): acceptance, passes per "
                             "call, seconds, whether the actions are identical")


def run(args: argparse.Namespace) -> dict:
    import torch

    from agent.streaming import CacheScheme, Decoding
    from agent.streaming.engine import load_checkpoint, random_model

    if args.steps < 8 or args.sessions < 1 or args.batch_steps < 4:
        raise ValueError("bench agent needs --steps >= 8, --sessions >= 1, --batch-steps >= 4")
    if args.nav_episodes and not args.checkpoint:
        raise ValueError("bench agent --nav-episodes needs --checkpoint (random weights do not navigate)")
    schemes = [CacheScheme(name.strip()) for name in args.schemes.split(",") if name.strip()]
    decodings = [Decoding(name.strip()) for name in args.decoding.split(",") if name.strip()]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    if args.checkpoint:
        model, processor = load_checkpoint(args.checkpoint, args.device, args.dtype)
    else:
        model, processor = random_model(args.preset, args.device, args.dtype, args.seed)
    size = args.frame_size or int(model.config.image_size)
    frames = FrameSource(size, args.seed)
    result = {
        "preset": args.preset, "checkpoint": args.checkpoint, "device": str(args.device), "dtype": args.dtype, "steps": args.steps,
        "frame_size": size, "tokens_per_frame": int(model.config.tokens_per_frame),
        "torch": torch.__version__, "schemes": {},
    }
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    graph = args.decode_graph == "on" or (args.decode_graph == "auto" and args.device.startswith("cuda"))
    result["decode_graph"] = graph
    gqa = args.gqa_attention == "on"
    result["gqa_attention"] = gqa
    base = {"full_chunks": True, "decode_graph": graph, "encode_graph": graph, "gqa_attention": gqa,
            "draft": args.draft}
    result["draft"] = args.draft
    result["decodings"], result["graph_errors"] = {}, []
    for decoding in decodings:
        block = measure_decoding(args, model, processor, frames, schemes, dict(base, decoding=decoding))
        result["graph_errors"] += block.pop("graph_errors")
        result["decodings"][decoding.value] = block
    first = result["decodings"][decodings[0].value]
    first_agent = first["agent"]
    for block in result["decodings"].values():
        block.pop("agent")
    result.update(first)  # the first decoding's numbers, top-level too
    by_name = result["schemes"]
    if args.floor == "on" or (args.floor == "auto" and args.device.startswith("cuda")):
        with torch.no_grad():
            result["floor"] = call_floor(first_agent, by_name)
        for block in result["decodings"].values():  # the top-level "batched" is the first one's dict
            block["batched"]["ceiling"] = batched_ceiling(block["batched"], result["floor"])
    if args.nav_episodes:
        from streamvln.benchmarks.agent_nav import navigation_acceptance

        result["navigation"] = navigation_acceptance(args.checkpoint, args.nav_episodes, args.seed, args.draft)
    if args.device.startswith("cuda"):
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def measure_decoding(args, model, processor, frames: FrameSource, schemes: list, base: dict) -> dict:
    """Every scheme's episode latency, the logit check and the batched sessions with one decoding.
    Returns them with the streaming agent used ("agent") and its graph errors."""
    from agent.streaming import CacheScheme, StreamingAgent, StreamingConfig

    graph = base["decode_graph"]
    runs = [(scheme.value, StreamingConfig(scheme=scheme, **base)) for scheme in schemes]
    if graph and CacheScheme.STREAMING in schemes:  # the same scheme without the graph levers
        runs.append(("streaming_eager", StreamingConfig(**dict(base, decode_graph=False, encode_graph=False))))
    if args.only == "batched":
        runs = []
    block, graph_errors = {"schemes": {}}, []
    for name, config in runs:
        agent = StreamingAgent(model, processor, config)
        warm_up(agent, frames, args.warmup_calls if args.warmup_calls is not None else config.calls_per_window + 1)
        prefetch = args.prefetch == "on" and config.scheme is CacheScheme.STREAMING and name == "streaming"
        block["schemes"][name] = episode_latency(agent, frames, args.steps, prefetch)
        graph_errors += agent.graph_errors
    by_name = block["schemes"]
    if "streaming" in by_name and "recompute" in by_name:
        block["speedup_mean_vs_recompute"] = by_name["recompute"]["mean_ms"] / by_name["streaming"]["mean_ms"]
    if "streaming" in by_name and "original" in by_name:
        block["speedup_mean_vs_original"] = by_name["original"]["mean_ms"] / by_name["streaming"]["mean_ms"]
    streaming = StreamingAgent(model, processor, StreamingConfig(**base))
    if args.only == "all":
        block["max_abs_logit_diff"] = logit_check(streaming, frames)
    block["batched"] = batched_throughput(streaming, frames, args.sessions, args.batch_steps,
                                          args.sequential_baseline == "on")
    block["graph_errors"] = graph_errors + streaming.graph_errors
    block["agent"] = streaming
    return block


class FrameSource:
    """Deterministic random uint8 frames of one size."""

    def __init__(self, size: int, seed: int):
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.size = size

    def next(self) -> np.ndarray:
        return self.rng.integers(0, 256, size=(self.size, self.size, 3), dtype="uint8")


def warm_up(agent: StreamingAgent, frames: FrameSource, calls: int) -> None:
    session = agent.open("warm up: walk to the kitchen", name="warmup")
    for _ in range(calls):
        agent.act(session, frames.next())
        agent.prefetch(session)  # a no-op outside the streaming scheme


def episode_latency(agent: StreamingAgent, frames: FrameSource, steps: int, prefetch: bool = False) -> dict:
    """One episode of `steps` env steps: per-call latency stats, per window, and the breakdown.

    With prefetch, agent.prefetch runs after each call (in a deployment: while the chunk's actions
    execute) and is timed separately from the calls."""
    import numpy as np

    session = agent.open("walk past the red sofa, turn left into the kitchen and stop by the fridge")
    totals, windows, parts, prefetch_ms = [], [], {"encode": [], "prefill": [], "generate": []}, []
    while session.step < steps:
        window = session.step // agent.config.num_frames
        out = agent.act(session, frames.next())
        totals.append(out.timings_ms["total"])
        windows.append(window)
        for key in parts:
            parts[key].append(out.timings_ms[key])
        if prefetch:
            begin = agent.now_ms()
            if agent.prefetch(session):
                prefetch_ms.append(agent.now_ms() - begin)
    per_window = [float(np.median([t for t, w in zip(totals, windows) if w == i])) for i in range(max(windows) + 1)]
    window_starts = [t for i, t in enumerate(totals) if i > 0 and windows[i] != windows[i - 1]]
    return {
        "calls": len(totals), "first_call_ms": totals[0],
        "median_ms": float(np.median(totals)), "p99_ms": float(np.percentile(totals, 99)),
        "mean_ms": float(np.mean(totals)), "max_ms": float(np.max(totals)),
        "window_start_median_ms": float(np.median(window_starts)) if window_starts else None,
        "per_window_median_ms": per_window,
        "breakdown_median_ms": {k: float(np.median(v)) for k, v in parts.items()},
        "stats": session.stats.as_dict(),
        "passes_per_call": session.stats.as_dict()["passes_per_call"],
        "acceptance_rate": session.stats.as_dict()["acceptance_rate"],
        "decoding": agent.config.decoding.value,
        "prefetch": prefetch,
        "prefetch_median_ms": float(np.median(prefetch_ms)) if prefetch_ms else None,
    }


def logit_check(agent: StreamingAgent, frames: FrameSource) -> dict:
    """Streaming vs full recompute at every call of a run crossing one window boundary."""
    from agent.streaming.check import max_abs_logit_diff

    session = agent.open("go down the hallway and stop at the bathroom door")
    calls = agent.config.calls_per_window + 2
    allowed, full = [], []
    for _ in range(calls):
        out = agent.act(session, frames.next())
        diff = max_abs_logit_diff(agent, session, out)
        allowed.append(diff["allowed"])
        full.append(diff["full_vocab_first_step"])
    return {"calls": calls, "windows": session.stats.windows, "allowed_ids": max(allowed),
            "full_vocab_first_step": max(full)}


def staggered_sessions(agent: StreamingAgent, frames: FrameSource, count: int) -> list:
    """`count` open sessions, session i already i calls in, so their caches differ in length and one of
    them starts a window in most rounds (scripts/profile_batched_round.py uses the same batch)."""
    from agent.streaming import Observation

    opened = [agent.open(f"episode {i}: find the blue chair in the office", name=f"b{i}") for i in range(count)]
    for lead in range(1, count):  # untimed: session i gets i calls ahead
        ahead = opened[lead:]
        agent.act_batch(ahead, [Observation(frames.next()) for _ in ahead])
    return opened


def batched_throughput(agent: StreamingAgent, frames: FrameSource, sessions: int, steps: int,
                       sequential: bool = False) -> dict:
    """Actions/s of `sessions` sessions advanced together vs one session alone.

    Before timing, session i takes i calls on its own, so the batch is ragged (caches of different
    lengths, windows starting at different calls); then every session takes steps/4 calls, timed.
    One fresh session's steps/4 calls cross fewer window starts than the staggered batch does (one
    per 16 calls against about one per round of 8), so with `sequential` the same staggered sessions
    are also run one call at a time (equal work) and `ratio_vs_sequential` is reported too."""
    import numpy as np

    from agent.streaming import Observation

    def run_sessions(count: int, calls: int, one_by_one: bool = False) -> tuple[float, int, dict]:
        """(seconds, actions, median ms per part + the decoding's passes per call and acceptance + the
        tokens prefilled per round of `count` calls)."""
        opened = staggered_sessions(agent, frames, count)
        prefilled_before = sum(s.stats.prefilled_tokens for s in opened)
        actions, start, parts = 0, agent.now_ms(), {"encode": [], "prefill": [], "generate": [], "total": []}
        decoded = []
        groups = [[s] for s in opened] if one_by_one else [opened]
        for _ in range(calls):
            for group in groups:
                outs = agent.act_batch(group, [Observation(frames.next()) for _ in group])
                actions += sum(len(o.actions) for o in outs)
                decoded += [o.decoded for o in outs]
                for key, values in parts.items():
                    values.append(outs[0].timings_ms[key])
        elapsed = (agent.now_ms() - start) / 1000.0
        breakdown = {key: float(np.median(values)) for key, values in parts.items()}
        drafted = sum(d.drafted for d in decoded)
        prefilled = sum(s.stats.prefilled_tokens for s in opened) - prefilled_before
        breakdown.update(passes_per_call=float(np.mean([d.passes for d in decoded])),
                         acceptance_rate=sum(d.accepted for d in decoded) / drafted if drafted else None,
                         prefilled_tokens_per_round=prefilled / calls)
        return elapsed, actions, breakdown

    calls = max(steps // agent.config.num_future_steps, 1)
    for count in range(1, sessions + 1):  # warm-up: every batch size (decode graphs, allocator)
        run_sessions(count, 1)
    single_s, single_actions, single_parts = run_sessions(1, calls)
    batch_s, batch_actions, batch_parts = run_sessions(sessions, calls)
    single_rate, batch_rate = single_actions / single_s, batch_actions / batch_s
    result = {"sessions": sessions, "calls_per_session": calls, "single_actions_per_s": single_rate,
              "batched_actions_per_s": batch_rate, "ratio": batch_rate / single_rate,
              "single_call_median_ms": single_parts, "batched_call_median_ms": batch_parts}
    if sequential:  # the same staggered sessions, one call at a time: the same work as the batched rounds
        seq_s, seq_actions, seq_parts = run_sessions(sessions, calls, one_by_one=True)
        result.update(sequential_actions_per_s=seq_actions / seq_s, ratio_vs_sequential=batch_rate * seq_s / seq_actions,
                      sequential_call_median_ms=seq_parts)
    return result


def batched_ceiling(batched: dict, floor: dict) -> dict:
    """The most a batched round can gain over one session: a round is compute-bound (every session's
    new turn, one window memory per round, the tree nodes), so it takes at least its prefilled tokens
    through the linear layers at the measured GEMM rate plus its measured frame encoding. Against the
    measured single-session call that bounds the actions/s ratio (full 4-action chunks on both sides)."""
    rounds = batched["batched_call_median_ms"]
    round_floor_ms = (rounds["prefilled_tokens_per_round"] / 1000 * floor["prefill_compute_ms_per_1k_tokens"]
                      + rounds["encode"])
    single_ms = batched["single_call_median_ms"]["total"]
    return {"round_compute_floor_ms": round_floor_ms, "round_median_ms": rounds["total"],
            "ratio_ceiling": batched["sessions"] * single_ms / round_floor_ms}


def call_floor(agent: StreamingAgent, schemes: dict) -> dict:
    """Why a call cannot be faster than this: a greedy call is num_future_steps sequential passes over
    the decoder's weights (turn prefill + 3 decode steps; the end marker costs none); a speculative one
    as many as the streaming run measured (1 when every draft is right). Measures the
    bytes per pass, the device's copy bandwidth, one M=1 pass over every linear weight (torch's GEMV
    kernels, no attention/norms: the best the eager modules could do) and one graphed decode step.
    For batched rounds (compute-bound prefills): the achieved GEMM TFLOP/s and the linear layers'
    prefill time per 1000 tokens at that rate."""
    import torch

    from agent.streaming.graph import GraphedDecoder, capture_graph

    text = agent.text_model
    weights = [m.weight for m in text.decoder.modules() if isinstance(m, torch.nn.Linear)]
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    on_cuda = text.device.type == "cuda"

    def timed(fn, repeats: int = 10) -> float:
        fn()
        start = agent.now_ms()
        for _ in range(repeats):
            fn()
        return (agent.now_ms() - start) / repeats

    copy_gbps = copy_bandwidth_gbps(min(2**30, 4 * weight_bytes), text.device, timed)
    inputs = {w.shape[1]: torch.zeros((1, w.shape[1]), dtype=text.dtype, device=text.device) for w in weights}

    def linear_pass():
        return [torch.nn.functional.linear(inputs[w.shape[1]], w) for w in weights][-1]

    run_pass = linear_pass
    if on_cuda:
        graph, _ = capture_graph(linear_pass)
        run_pass = graph.replay
    streaming = schemes.get("streaming")
    passes = streaming["passes_per_call"] if streaming is not None else agent.config.num_future_steps
    pass_floor_ms = weight_bytes / copy_gbps / 1e6 * 2  # a pass only reads: half the copy's traffic
    decoder = agent.graph_decoder(1)
    decoder.evict()  # the replays below write row 0: a session viewing it gets its own copy first
    decoder.lengths = [min(2048, decoder.max_len - 8)]
    decoder._open_columns()
    step_ms = timed(decoder.graph.replay if decoder.graph is not None else decoder._body)
    # The same step over a 512-column scratch: how much of a step is attention over the long scratch.
    short = GraphedDecoder(text, 512, 1, on_cuda)
    short.lengths = [256]
    short._open_columns()
    short_ms = timed(short.graph.replay if short.graph is not None else short._body)
    params = sum(w.numel() for w in weights)
    tflops = gemm_tflops(text, timed)
    result = {"decoder_linear_gb": weight_bytes / 1e9, "copy_gbps": copy_gbps, "gemm_tflops": tflops,
              "prefill_compute_ms_per_1k_tokens": 2 * params * 1000 / tflops / 1e9,
              "bandwidth_pass_ms": pass_floor_ms, "linear_pass_ms": timed(run_pass),
              "decode_step_ms": step_ms, "decode_step_512_columns_ms": short_ms, "passes_per_call": passes,
              "greedy_passes_per_call": agent.config.num_future_steps}
    if streaming is not None:
        encode = streaming["breakdown_median_ms"]["encode"]
        result["call_floor_ms"] = encode + passes * pass_floor_ms
        result["call_at_linear_pass_ms"] = encode + passes * result["linear_pass_ms"]
        if "recompute" in schemes:
            mean = schemes["recompute"]["mean_ms"]
            result["speedup_at_floor"] = mean / result["call_floor_ms"]
            result["speedup_at_linear_pass"] = mean / result["call_at_linear_pass_ms"]
    return result


def gemm_tflops(text, timed) -> float:
    """Achieved dense matmul throughput at a prefill-like shape (2048 tokens x the MLP's up projection)."""
    import torch

    config = text.config
    tokens = torch.randn((2048, config.hidden_size), dtype=text.dtype, device=text.device)
    weight = torch.randn((config.intermediate_size, config.hidden_size), dtype=text.dtype, device=text.device)
    ms = timed(lambda: torch.nn.functional.linear(tokens, weight), 5)
    return 2 * tokens.shape[0] * weight.numel() / ms / 1e9


def copy_bandwidth_gbps(size_bytes: int, device, timed) -> float:
    """Device memory bandwidth of a plain copy of `size_bytes` (read + write traffic counted)."""
    import torch

    source = torch.empty(int(size_bytes) // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    copy_ms = timed(lambda: target.copy_(source))
    return 2 * source.numel() * source.element_size() / copy_ms / 1e6


if __name__ == "__main__":  # `python -m streamvln.benchmarks.agent ...`: this benchmark alone
    import json

    cli = argparse.ArgumentParser(prog="python -m streamvln.benchmarks.agent", description=HELP)
    add_arguments(cli)
    cli.add_argument("--json", default=None, metavar="FILE", help="also write the result to FILE")
    parsed = cli.parse_args()
    text = json.dumps(run(parsed), indent=2, sort_keys=True)
    print(text)
    if parsed.json:
        with open(parsed.json, "w") as handle:
            handle.write(text + "\n")
