# Source on the GPU host, from the repository root: installs the wheels of scripts/offline_wheels.sh
# into TARGET (default /tmp/site) without any index, builds scikit-fmm from its sdist there, and sets
# the environment the learner needs (the repository on PYTHONPATH: `python3 -m streamvln.cli ...`).
# Usage: [SRC=.whl] [TARGET=/tmp/site] source scripts/offline_install.sh
SRC=${SRC:-.whl}; TARGET=${TARGET:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TARGET" \
  "$SRC"/*.whl || return 1
export PYTHONPATH="$TARGET:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$TARGET" \
  "$SRC"/scikit_fmm-*.tar.gz || return 1
# DeepSpeed's op builder rejects the arch-specific suffix some CUDA images set (9.0a).
arch=${TORCH_CUDA_ARCH_LIST:-9.0}
export TORCH_CUDA_ARCH_LIST=${arch//9.0a/9.0} PYTHONUNBUFFERED=1
python3 -c "import skfmm, deepspeed, zmq, gymnasium; print('offline install ok: deepspeed', deepspeed.__version__)"
