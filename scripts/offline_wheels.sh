#!/usr/bin/env bash
# Wheels for a GPU host without internet whose CUDA image already has torch, transformers, tokenizers,
# safetensors, numpy, numba, msgpack, pillow, pyyaml, tqdm, rich, tensorboard, psutil, py-cpuinfo,
# packaging, meson and ninja: everything else streamvln needs, for that host's Python, downloaded here
# into DEST (default .whl). scikit-fmm publishes no Linux wheels: its sdist comes along with meson-python
# to build it there. Install there with scripts/offline_install.sh.
# Usage: [DEST=.whl] [PY=3.12] bash scripts/offline_wheels.sh
set -euo pipefail
DEST=${DEST:-.whl}; PY=${PY:-3.12}
mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
# Pinned to what this project was last run with there; deepspeed's own needs are listed with it.
binary=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 hjson==3.1.0
        pyzmq==27.3.0 gymnasium==1.4.0 farama-notifications==0.0.6 meson-python==0.22.1 pyproject-metadata==0.12.1)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  "${platforms[@]}" -d "$DEST" "${binary[@]}"
python3 -m pip wheel -q --no-deps -w "$DEST" deepspeed==0.19.8  # a py3-none-any wheel; ops build at run time
python3 -m pip download -q --no-deps --no-binary=scikit-fmm -d "$DEST" scikit-fmm==2025.6.23
ls "$DEST"
