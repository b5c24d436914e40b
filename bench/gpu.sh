#!/usr/bin/env bash
# GPU benchmark, one run settles the figures (about 8 minutes on one H100/H200, no network):
# on the JPEG CIFAR-10 copy, the tutorial's own loop and `--recipe tutorial` (both loaders) for 2
# epochs, `fast` to completion with 3 seeds, `fast` under the dashboard in a pseudo-terminal,
# `fast95` if the budget allows, and the learning-rate finder on `fast`. Runs the engine from
# the checkout (no install).
#   bench/gpu.sh                  full run (needs carry/cifar10-jpeg.tar.gz or ../shared/data/cifar10-jpeg.tar.gz)
#   bench/gpu.sh --smoke          tiny CPU-capable check of the script itself (in the test suite)
#   bench/gpu.sh --budget 400     seconds for the plan: optional runs that would not fit are skipped
# Wheels in .whl/ (textual and its needs, for the dashboard run; see docs/benchmarks.md) are
# installed to a temporary folder first when textual is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"
if ! python -c "import textual" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    site="$(mktemp -d)"
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
exec python bench/gpu_run.py "$@"
