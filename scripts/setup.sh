#!/usr/bin/env bash
# Set up .venv with pancap installed. Takes the CPU build of torch where there is no NVIDIA GPU (a plain
# `torch` requirement in a fresh venv pulls a multi-GB CUDA build), the CUDA build where there is one.
#   bash scripts/setup.sh          the package and its runtime dependencies
#   bash scripts/setup.sh --dev    also the test tools, and Chromium for the gallery's browser test
# Environment: PYTHON (interpreter for the venv, default python3), PANCAP_TORCH_VERSION (default 2.13.0),
# PANCAP_TORCH_CPU_INDEX (where CPU wheels come from when none is on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
py=.venv/bin/python
torch_version=${PANCAP_TORCH_VERSION:-2.13.0}
cpu_index=${PANCAP_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the CUDA build of torch $torch_version"
    "$py" -m pip install -q "torch==$torch_version"
  else
    echo "setup: no GPU, installing the CPU build of torch $torch_version"
    wheels=$(mktemp -d)
    # a CPU wheel this machine already has (pip's find-links), else the CPU index
    if "$py" -m pip download -q --no-index --no-deps "torch==$torch_version" -d "$wheels" >/dev/null 2>&1 \
      && ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1; then
      "$py" -m pip install -q "$wheels"/torch-*.whl
    else
      "$py" -m pip install -q "torch==$torch_version" --index-url "$cpu_index" --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$wheels"
  fi
fi

if [ "$dev" = 1 ]; then
  "$py" -m pip install -q -e ".[dev]"
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Chromium for the gallery's browser test"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install Chromium; the gallery browser test will fail" >&2
    else
      echo "setup: Chromium is missing and cannot be installed here; the gallery browser test will fail" >&2
    fi
  fi
else
  "$py" -m pip install -q -e .
fi
"$py" -c "import torch; print('setup: torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
