"""Issue 5's multi-GPU check, setup + comparison (run from the repo root; scripts/zero2_scaling.sh
drives it on a machine with 2 GPUs).

setup OUT_DIR [WORKERS [STEPS [BUCKET [MICRO [COMPILE [OVERLAP]]]]]]: a navigation store + two train configs with the same
  global batch of 2 x MICRO (one.yaml: 1 GPU x micro batch MICRO x accumulation 2; two.yaml: 2 GPUs x
  micro batch MICRO; small preset, ZeRO-2, the same samples per step; MICRO default 8; WORKERS data loader
  processes per rank, default 4; STEPS optimizer steps, default 50: more steps give a steadier samples/s
  median; BUCKET, if given and not 0, ZeRO's reduce_bucket_size in elements for both, over
  configs/deepspeed/zero2.json's; COMPILE 1: speed.compile_blocks for both, torch.compile of each LM
  decoder layer, fewer kernel launches for a host-bound step; OVERLAP 0: ZeRO's overlap_comm off for both,
  which drops the device-wide synchronize DeepSpeed calls around each gradient bucket with it on).
compare ONE_RUN TWO_RUN [ONE_RUN TWO_RUN ...] JSON: per pair the loss curves, their max relative
  difference (first 50 steps) and the samples/s ratio; over all pairs the pooled ratio (mean 2-GPU rate / mean 1-GPU rate)
  and the median of the pairs' ratios; with several pairs, the repeat noise (max relative loss difference
  between two runs of the same setting), the tolerance for the 1-GPU vs 2-GPU difference.
"""
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup(out: Path, workers: int = 4, steps: int = 50, bucket: int = 0, micro: int = 8,
          compile_blocks: int = 0, overlap_comm: int = 1) -> None:
    sys.path.insert(0, str(REPO / "tests" / "rollout"))
    from rollout_fixtures import make_trajectory

    from rollout.store import EpisodeStore, StoreConfig

    store_dir = out / "store"
    store = EpisodeStore(store_dir, StoreConfig(fsync=False))
    for index in range(128):
        store.add(make_trajectory(num_steps=64, episode_id=f"ep{index}", size=64))
    zero = {**({"reduce_bucket_size": bucket} if bucket else {}), **({} if overlap_comm else {"overlap_comm": False})}
    overrides = f"deepspeed_overrides: {json.dumps({'zero_optimization': zero})}" if zero else ""  # JSON is YAML
    for name, accum in (("one", 2), ("two", 1)):  # global batch 2 x micro = 1 x micro x 2 = 2 x micro x 1
        (out / f"{name}.yaml").write_text(f"""
model_preset: small
tunable_parts: [mm_mlp_adapter, mm_language_model]
zero_stage: 2
bf16: true
steps: {steps}
seed: 0
micro_batch_size: {micro}
grad_accum_steps: {accum}
progress: false
log_every: 1
schedule: {{kind: cosine, warmup_steps: 5}}
optim: {{lr: 5.0e-5}}
data: {{num_frames: 32, num_history: 8, num_workers: {workers}, pin_memory: true,
        sources: [{{kind: store, path: {store_dir}, name: nav}}]}}
speed: {{packing: true, attn_implementation: sdpa_varlen, assistant_only_logits: true,
         gradient_checkpointing: false, compile_blocks: {str(bool(compile_blocks)).lower()}}}
{overrides}
""")


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# Loss curves are compared over the 50 steps: a longer run (STEPS, for steadier rates) memorises
# the 128-episode store, and relative differences between losses near 1e-4 say nothing.
LOSS_STEPS = 50


def _rel_diffs(a: list[float], b: list[float]) -> list[float]:
    return [abs(x - y) / max(abs(x), 1e-8) for x, y in zip(a[:LOSS_STEPS], b[:LOSS_STEPS])]


def repeat_noise(runs: list[Path]) -> float | None:
    """The largest max relative loss difference between two repeats of the same setting: the tolerance
    a 1-GPU vs 2-GPU difference is judged against (bf16 reductions are not bitwise repeatable)."""
    losses = [[m["loss"] for m in _metrics(run)] for run in runs]
    diffs = [max(_rel_diffs(a, b)) for i, a in enumerate(losses) for b in losses[i + 1:]]
    return max(diffs) if diffs else None


def pair(one: Path, two: Path) -> dict:
    a, b = _metrics(one), _metrics(two)
    la, lb = [m["loss"] for m in a], [m["loss"] for m in b]
    rel = _rel_diffs(la, lb)
    skip = 5  # first steps: allocator, data loader warm-up
    sa = statistics.median(m["samples_per_s"] for m in a[skip:])
    sb = statistics.median(m["samples_per_s"] for m in b[skip:])
    result = {"steps": [len(la), len(lb)], "loss_one_gpu": la, "loss_two_gpus": lb,
              "max_rel_diff": max(rel), "mean_rel_diff": sum(rel) / len(rel),
              "first_last_one": [la[0], la[-1]], "first_last_two": [lb[0], lb[-1]],
              "samples_per_s_one_gpu": sa, "samples_per_s_two_gpus": sb, "scaling": sb / sa,
              "mfu_one_gpu": statistics.median(m.get("mfu", 0.0) for m in a[skip:]),
              "mfu_two_gpus": statistics.median(m.get("mfu", 0.0) for m in b[skip:])}
    print({k: v for k, v in result.items() if not k.startswith("loss_")})
    return result


def compare(runs: list[Path], out: Path) -> None:
    if not runs or len(runs) % 2:
        raise SystemExit(f"compare needs ONE_RUN TWO_RUN pairs, got {len(runs)} run folders")
    pairs = [pair(one, two) for one, two in zip(runs[::2], runs[1::2])]
    one_rate = statistics.mean(p["samples_per_s_one_gpu"] for p in pairs)
    two_rate = statistics.mean(p["samples_per_s_two_gpus"] for p in pairs)
    result = {"pairs": pairs, "samples_per_s_one_gpu": one_rate, "samples_per_s_two_gpus": two_rate,
              "scaling": two_rate / one_rate, "scaling_median_of_pairs": statistics.median(p["scaling"] for p in pairs),
              "max_rel_diff": max(p["max_rel_diff"] for p in pairs),
              "repeat_noise_one_gpu": repeat_noise(runs[::2]), "repeat_noise_two_gpus": repeat_noise(runs[1::2])}
    out.write_text(json.dumps(result, indent=1))
    print({k: v for k, v in result.items() if k != "pairs"})


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(Path(sys.argv[2]), *(int(float(arg)) for arg in sys.argv[3:9]))
    else:
        compare([Path(arg) for arg in sys.argv[2:-1]], Path(sys.argv[-1]))
