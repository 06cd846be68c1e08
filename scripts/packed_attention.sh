#!/usr/bin/env bash
# Issue 8's training budget: the tiny preset at configs/benchmark.yaml's train settings (micro batch 64,
# packing, bf16, 40 steps) with the packed micro batch attended through plain sdpa (an N x N
# block-diagonal mask over all N tokens of the micro batch) and through sdpa_varlen (one varlen flash
# call per layer), alternated sdpa, sdpa_varlen, sdpa on one GPU; prints each run's median samples/s,
# step time and last loss. The store is scripts/zero2_scaling.py's synthetic one (128 episodes).
# Usage: OUT=folder [MICRO=64] [WORKERS=10] [STEPS=40] bash scripts/packed_attention.sh
set -u
OUT=${OUT:?set OUT to a results folder}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
W=$(mktemp -d)
python3 scripts/zero2_scaling.py setup "$W" "${WORKERS:-10}" 1 > /dev/null  # only its store is used
run=0
for attention in sdpa sdpa_varlen sdpa; do
  run=$((run + 1))
  cat > "$W/$run.yaml" <<YAML
model_preset: tiny
tunable_parts: [mm_vision_tower, mm_mlp_adapter, mm_language_model]
deepspeed_config: configs/deepspeed/zero2.json
micro_batch_size: ${MICRO:-64}
bf16: true
steps: ${STEPS:-40}
seed: 0
progress: false
log_every: 1
optim: {lr: 1.0e-3, vision_tower_lr: 1.0e-3, weight_decay: 0.0}
schedule: {kind: cosine, warmup_ratio: 0.03, min_lr_ratio: 0.1}
data: {num_frames: 16, num_workers: ${WORKERS:-10}, sources: [{kind: store, path: $W/store, name: nav}]}
speed: {gradient_checkpointing: false, assistant_only_logits: true, packing: true, attn_implementation: $attention}
YAML
  python3 -m streamvln.cli train --config "$W/$run.yaml" --out "$W/run$run" --no-export > "$OUT/$run-$attention.log" 2>&1
  python3 - "$W/run$run/metrics.jsonl" "$attention" <<'PY' | tee -a "$OUT/packed_attention.txt"
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])][10:]  # after warm-up
print(f"{sys.argv[2]}: {statistics.median(r['samples_per_s'] for r in rows):.1f} samples/s, "
      f"{1000 * statistics.median(r['step_time_s'] for r in rows):.1f} ms per step, last loss {rows[-1]['loss']:.4f}")
PY
done
