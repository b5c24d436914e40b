#!/usr/bin/env bash
# Fills .whl/ with the wheels that the dashboard run and the sweep note of bench/gpu.sh need on a GPU box that has
# torch but neither textual nor network (Python 3.12, x86-64): textual, plotext and their pure-Python
# needs, at the versions installed in this environment. bench/gpu.sh installs them to a temporary
# folder when it finds textual missing. Run it where pip can reach a package index.
set -euo pipefail
cd "$(dirname "$0")/.."
names="textual plotext rich markdown-it-py mdurl mdit-py-plugins linkify-it-py uc-micro-py platformdirs pygments typing_extensions
       optuna alembic sqlalchemy greenlet mako markupsafe colorlog tqdm pyyaml packaging"  # (the sweep note's)
pins=$(python - $names <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
out = []
for name in sys.argv[1:]:
    try:
        out.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        out.append(name)  # not installed here: the index's newest
print(" ".join(out))
PY
)
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
ls .whl
