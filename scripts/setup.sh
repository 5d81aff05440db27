#!/usr/bin/env bash
# Create .venv and install edorient with its test extras.
# torch is pinned to 2.13.0: a CPU wheel of it lies on the development machines; an unpinned
# torch would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[tests]"
