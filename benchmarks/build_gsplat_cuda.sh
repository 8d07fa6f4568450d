#!/usr/bin/env bash
# Builds gsplat 1.4.0's CUDA extension ahead, on a machine with no GPU, for the lent GPU machine's Python and torch
# (Python 3.12, torch 2.11.0+cu130, CUDA 13.0: KINDS.md and the 2026-11-26 runs), so a lent GPU rasterises with gsplat
# from its first step instead of JIT-building it for ~4 minutes of a 15-minute lease.
#
#   benchmarks/build_gsplat_cuda.sh            (idempotent: an up-to-date build is kept; ~1 hour per arch on 2 cores)
#
# Output, in build/gsplat_cuda/ (ignored by git; the GPU command carries it, ~10-20 MB per arch):
#   csrc.so          gsplat's extension compiled as the module `gsplat.csrc`, the name gsplat's _backend imports
#                    first (`from gsplat import csrc as _C`) before it falls back to the JIT build; installing it is a
#                    copy into the installed gsplat package: `cp build/gsplat_cuda/csrc.so <site>/gsplat/`
#   BUILD_INFO.json  what it was built for (torch, Python, CUDA, archs, gsplat); benchmarks/gpu_session.sh installs it
#                    only where the machine's torch and Python match, and uses the torch rasteriser otherwise
# Work files (a Python 3.12 venv with the CUDA build of torch, its CUDA libraries and gsplat, ~5 GB; the object
# files) stay in build/gsplat_cuda_work/. After the build the module is imported there, without a GPU, as the CPU check.
#
# Knobs (environment): PYTHON312 (a Python 3.12; default python3.12, then pyenv's), TORCH_VERSION (2.11.0),
# GSPLAT_VERSION (1.4.0), ARCHS (CUDA archs, default "9.0": H100/H200; "8.0;9.0" adds the A100 for ~twice the
# time), CUDA_HOME (/usr/local/cuda; its nvcc must have torch's CUDA major version), MAX_JOBS (1).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
GSPLAT_VERSION=${GSPLAT_VERSION:-1.4.0}
ARCHS=${ARCHS:-9.0}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export MAX_JOBS=${MAX_JOBS:-1}
OUT_DIR=build/gsplat_cuda
WORK=build/gsplat_cuda_work
VENV=$WORK/venv

fail() { echo "build_gsplat_cuda: $*" >&2; exit 1; }

# 0. the tools, checked before any long work.
PY=${PYTHON312:-}
if [ -z "$PY" ]; then
  if command -v python3.12 >/dev/null && python3.12 -c "" 2>/dev/null; then PY=python3.12
  elif command -v pyenv >/dev/null && PYENV_VERSION=3.12.1 pyenv which python3.12 >/dev/null 2>&1; then
    PY=$(PYENV_VERSION=3.12.1 pyenv which python3.12)
  else fail "no Python 3.12 found: set PYTHON312 to one (the GPU machine's python3 is 3.12)"; fi
fi
[ -x "$CUDA_HOME/bin/nvcc" ] || fail "no nvcc in $CUDA_HOME/bin: set CUDA_HOME, or pip install nvidia-cuda-nvcc (13.x)"
nvcc_major=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
[ "$nvcc_major" = 13 ] || fail "nvcc is CUDA $nvcc_major, torch $TORCH_VERSION+cu130 needs CUDA 13: set CUDA_HOME"

# 1. a Python 3.12 venv with the CUDA build of torch (PyPI's torch 2.11.0 is +cu130) and gsplat (its wheel carries
#    the CUDA sources; the same wheel the GPU machine installs).
if ! "$VENV/bin/python" -c "import torch, gsplat.version as g, sys; sys.exit(torch.__version__.split('+')[0] != \
'$TORCH_VERSION' or g.__version__ != '$GSPLAT_VERSION')" 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-cache-dir "torch==$TORCH_VERSION" "gsplat==$GSPLAT_VERSION" ninja numpy
fi

# 2. compile (skipped when BUILD_INFO.json says this exact build is there), then 3. import it here, without a GPU.
"$VENV/bin/python" - "$WORK" "$OUT_DIR" "$ARCHS" <<'EOF'
import glob, hashlib, json, os, shutil, sys, time
import torch
from torch.utils import cpp_extension

work, out_dir, archs = sys.argv[1:4]
import gsplat.version

pkg = os.path.dirname(gsplat.version.__file__)
src = os.path.join(pkg, "cuda", "csrc")

info = {
    "module": "gsplat.csrc",
    "gsplat": gsplat.version.__version__,
    "torch": torch.__version__,
    "python": "%d.%d" % sys.version_info[:2],
    "cuda": torch.version.cuda,
    "archs": archs,
    "cxx11_abi": torch.compiled_with_cxx11_abi(),
}
so = os.path.join(out_dir, "csrc.so")
info_path = os.path.join(out_dir, "BUILD_INFO.json")
built = os.path.exists(so) and os.path.exists(info_path)
if built:
    old = json.load(open(info_path))
    built = {k: old.get(k) for k in info} == info
if built:
    print(f"build_gsplat_cuda: up to date ({so})")
else:
    # The flags gsplat's own JIT build (gsplat/cuda/_backend.py) passes, for the named archs.
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    build_dir = os.path.join(work, "ninja")
    os.makedirs(build_dir, exist_ok=True)
    sources = sorted(glob.glob(os.path.join(src, "*.cu")) + glob.glob(os.path.join(src, "*.cpp")))
    start = time.time()
    cpp_extension.load(
        name="csrc",
        sources=sources,
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
        extra_include_paths=[src, os.path.join(src, "third_party", "glm")],
        build_directory=build_dir,
        is_python_module=False,  # imported below from its final place, as the GPU machine will
        verbose=True,
    )
    info["build_seconds"] = round(time.time() - start)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(os.path.join(build_dir, "csrc.so"), so)
    info["sha256"] = hashlib.sha256(open(so, "rb").read()).hexdigest()
    info["bytes"] = os.path.getsize(so)
    info["built"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    json.dump(info, open(info_path, "w"), indent=1)
    print(f"build_gsplat_cuda: built {so} ({info['bytes'] / 2**20:.1f} MB) in {info['build_seconds']} s")

# The CPU check: installed as the GPU machine installs it (a copy into the gsplat package), the module loads (its
# symbols resolve against this torch and the CUDA runtime; no GPU is needed to load it) and gsplat's backend picks it
# up instead of JIT-building (a failed import raises here, before _backend would start a JIT build).
shutil.copy(so, os.path.join(pkg, "csrc.so"))
import gsplat.csrc
from gsplat.cuda._backend import _C

assert _C is not None and _C.__name__ == "gsplat.csrc", _C
names = [n for n in dir(_C) if not n.startswith("_")]
print(f"build_gsplat_cuda: import check passed: gsplat.csrc with {len(names)} functions, e.g. {names[:3]}")
print(f"build_gsplat_cuda: CUDA available here: {torch.cuda.is_available()}")
EOF
