#!/usr/bin/env bash
# Set up the environment (if needed) and run the main job on the built-in defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/edorient demo "$@"
