#!/usr/bin/env bash
# Wheels the GPU benchmark needs on a lent GPU machine, whose image has PyTorch, peft's other needs and no network:
# the versions pinned in constraints.txt of what the image lacks or holds in another version. Run here (PyPI is
# reachable), then carry .whl/ to the machine (it is git-ignored; about 21 MB). On the machine:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 tests/bench/bench_train_gpu.py --json $OUT/bench.json
set -euo pipefail
cd "$(dirname "$0")/../.."
pin() { grep -iE "^$1==" constraints.txt | head -1; }
packages=(transformers peft pydantic pydantic_core annotated-types typing-inspection tokenizers regex)
wanted=()
for name in "${packages[@]}"; do
    line=$(pin "$name") || { echo "gpu_wheels: $name is not pinned in constraints.txt" >&2; exit 1; }
    wanted+=("$line")
done
rm -rf .whl && mkdir .whl
# The machine's python3 is CPython 3.12 on x86-64 (see the workplace's device notes).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${wanted[@]}"
du -sh .whl
ls .whl
