#!/usr/bin/env bash
# Issue 5: ZeRO-2 on 1 vs 2 GPUs with the same global batch (loss curves + samples/s scaling), then the
# 7b preset's shapes under ZeRO-3 on 2 GPUs for a few steps. Needs 2 CUDA GPUs; about 4 minutes on
# 2 x H100. Usage: OUT=results_dir [WORKERS=4] [REPEATS=1] [STEPS=50] [BUCKET=0] [MICRO=8] [COMPILE=0] [OVERLAP=1] [GPUS=0,1] [ZERO3=1] bash scripts/zero2_scaling.sh
# (WORKERS: data loader processes per rank; REPEATS: 1-GPU / 2-GPU pairs run alternately, pooled in
# zero2_scaling.json, since one pair's ratio moved 1.35-2.53 on one machine; STEPS: optimizer steps per
# run; BUCKET: ZeRO reduce_bucket_size in elements, 0 keeps configs/deepspeed/zero2.json's; MICRO: the
# micro batch per GPU, the global batch being 2 x MICRO on both sides; COMPILE=1: torch.compile of
# each LM decoder layer on both sides; OVERLAP=0: ZeRO's overlap_comm off on both sides; GPUS: the two GPUs used, the 1-GPU run on the first, so a machine
# with more GPUs can run other work beside it; ZERO3=0 skips the 7b part)
set -u
OUT=${OUT:?set OUT to a results folder}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
W=$(mktemp -d)
python3 scripts/zero2_scaling.py setup "$W" "${WORKERS:-4}" "${STEPS:-50}" "${BUCKET:-0}" "${MICRO:-8}" "${COMPILE:-0}" "${OVERLAP:-1}"
# torchrun --standalone takes a free rendezvous port: two pairs at once on a 4-GPU machine both asked for
# 29500 and the second failed with EADDRINUSE (session 14).
clean="env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u MASTER_PORT -u MASTER_ADDR"
GPUS=${GPUS:-0,1}
pairs=()
# torchrun gives each rank OMP_NUM_THREADS=1; the 1-GPU run gets the same, so a pair differs only in GPUs
# (with torch's default threads the 1-GPU run's loader workers were contended: 31-35 vs 39-51 samples/s).
for r in $(seq 1 "${REPEATS:-1}"); do
  $clean OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES="${GPUS%%,*}" python3 -m streamvln.cli train --config "$W/one.yaml" --out "$W/one$r" --no-export
  $clean CUDA_VISIBLE_DEVICES="$GPUS" python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m streamvln.cli train --config "$W/two.yaml" \
    --out "$W/two$r" --no-export
  pairs+=("$W/one$r" "$W/two$r")
done
python3 scripts/zero2_scaling.py compare "${pairs[@]}" "$OUT/zero2_scaling.json"
[ "${ZERO3:-1}" = 0 ] && exit 0
$clean CUDA_VISIBLE_DEVICES="$GPUS" python3 -m torch.distributed.run --standalone --nproc_per_node 2 --no-python bash -c \
  'exec python3 -m streamvln.cli bench learner --json '"$OUT"'/zero3_7b_rank$RANK.json --preset 7b --zero-stage 3 \
   --seq 4096 --micro-batch 1 --steps 3 --warmup 1 --no-baseline --no-lm --variants aolog+varlen'
