#!/usr/bin/env bash
# Set up .venv with pancap installed, printing one line per step.
#   bash scripts/setup.sh          the package and its runtime dependencies
#   bash scripts/setup.sh --dev    also the test tools, and Chromium for the gallery's browser test
# Where an NVIDIA GPU is found: the CUDA build of torch and FAISS for GPUs (the `gpu` extra, faiss-gpu, which
# replaces faiss-cpu: both install the `faiss` module). Elsewhere: the CPU build of torch, torch==VERSION+cpu (a
# plain `torch` requirement in a fresh venv pulls a multi-GB CUDA build), from the package indexes pip is configured
# with, plus PANCAP_TORCH_CPU_INDEX when set (PyTorch's CPU wheel index, as its installation page gives it); without
# either, the default build of torch is installed instead, and a line says so.
# Environment: PYTHON (interpreter for the venv, default python3), PANCAP_TORCH_VERSION (default 2.13.0),
# PANCAP_TORCH_CPU_INDEX (an extra package index holding torch's +cpu wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

[ -x .venv/bin/python ] || { echo "setup: creating .venv"; "${PYTHON:-python3}" -m venv .venv; }
py=.venv/bin/python
torch_version=${PANCAP_TORCH_VERSION:-2.13.0}
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
fi

# pip install, printing each requirement as pip takes it up, the install step, what it installed and its errors,
# rather than every line it reads
pip_install() {
  "$py" -m pip install --progress-bar off "$@" 2>&1 \
    | { grep --line-buffered -E "^(Collecting|Installing collected packages|Successfully installed|ERROR)" || true; } \
    | sed -u -E "s/^Collecting ([^ ]+).*/setup:   collecting \1/; s/^Installing collected packages: .*/setup:   installing the collected packages/"
}

if ! "$py" -c "import torch" 2>/dev/null; then
  if [ "$gpu" = 1 ]; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch $torch_version"
    pip_install "torch==$torch_version"
  else
    extra=()
    [ -n "${PANCAP_TORCH_CPU_INDEX:-}" ] && extra=(--extra-index-url "$PANCAP_TORCH_CPU_INDEX")
    echo "setup: no GPU: installing the CPU build of torch, torch==$torch_version+cpu"
    if ! pip_install "torch==$torch_version+cpu" ${extra[@]+"${extra[@]}"}; then
      echo "setup: no torch==$torch_version+cpu among the configured indexes (set PANCAP_TORCH_CPU_INDEX to" \
        "PyTorch's CPU wheel index to get it); installing the default build of torch $torch_version instead"
      pip_install "torch==$torch_version"
    fi
  fi
fi

extras=()
[ "$dev" = 1 ] && extras+=(dev)
[ "$gpu" = 1 ] && extras+=(gpu)
spec="."
[ "${#extras[@]}" -gt 0 ] && spec=".[$(IFS=,; echo "${extras[*]}")]"
echo "setup: installing pancap and its dependencies (pip install -e \"$spec\")"
pip_install -e "$spec"
if [ "$gpu" = 1 ]; then
  echo "setup: faiss-gpu replaces faiss-cpu (both install the faiss module; the last one written would win)"
  "$py" -m pip uninstall -q -y faiss-cpu
  faiss_gpu=$("$py" -c "from importlib.metadata import version; print(version('faiss-gpu'))")
  pip_install --force-reinstall --no-deps "faiss-gpu==$faiss_gpu"
fi

if [ "$dev" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium for the gallery's browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install Chromium; the gallery browser test will fail" >&2
  else
    echo "setup: Chromium is missing and cannot be installed here; the gallery browser test will fail" >&2
  fi
fi
"$py" -c "import faiss, torch; print('setup: torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu', '| faiss', faiss.__version__, 'GPUs:', faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0)"
