#!/usr/bin/env bash
# Create the benchmark-only virtualenvs of the baselines that bench_simulator.py compares with:
#   benchmarks/.venvs/py4dstem  py4DSTEM (kinematic Crystal.generate_diffraction_pattern), numpy < 2
#   benchmarks/.venvs/diffsims  diffsims (SimulationGenerator.get_diffraction_pattern) + orix,
#                               diffpy.structure
# They are git-ignored and never imported by edorient; the benchmark runs them as subprocesses.
# Usage: bash benchmarks/setup_baselines.sh [py4dstem|diffsims ...]   (default: both)
# PYTHON picks the interpreter the venvs are made from (default: python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venvs"
py="${PYTHON:-python3}"
mkdir -p "$venvs"

make_venv() {  # name, pip requirements...
    local name="$1"; shift
    local dir="$venvs/$name"
    if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "import json" 2>/dev/null; then
        echo "== $name: reusing $dir"
    else
        echo "== $name: creating $dir"
        "$py" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip
    fi
    "$dir/bin/python" -m pip install -q "$@"
    "$dir/bin/python" - <<'EOF'
import sys, numpy
print(f"   python {sys.version.split()[0]}, numpy {numpy.__version__}")
EOF
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(py4dstem diffsims)
for t in "${targets[@]}"; do
    case "$t" in
        # py4DSTEM 0.14 still needs numpy < 2 (np.float_, etc. in its dependencies).
        py4dstem) make_venv py4dstem "numpy<2" "py4DSTEM==0.14.18" ;;
        diffsims) make_venv diffsims "diffsims==0.7.0" orix diffpy.structure ;;
        *) echo "unknown baseline $t (choose py4dstem, diffsims)" >&2; exit 2 ;;
    esac
done
echo "done: venvs in $venvs"
