#!/usr/bin/env bash
# GPU benchmark: the seed's recipe for 2 epochs and `fast` to completion on the JPEG CIFAR-10 copy.
# Runs the engine from the checkout (no install, no textual, no network). Fits in ~8 min on one H100.
#   bench/gpu.sh            full run (needs carry/cifar10-jpeg.tar.gz or ../shared/data/cifar10-jpeg.tar.gz)
#   bench/gpu.sh --smoke    tiny CPU-capable check of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
exec python bench/gpu_run.py "$@"
