#!/usr/bin/env bash
# Mutation test of src/genmodels/units.py against tests/test_units.py and units.py's doctests (mutmut 3).
#
# Runs in a scratch copy of the working tree, so neither mutmut's mutants/ folder nor its setup.cfg
# (mutmut reads [tool.mutmut] from pyproject.toml, else [mutmut] from setup.cfg) touch the repository.
#
# Usage: tools/mutation_units.sh [PYTHON]    PYTHON: a Python with mutmut>=3.8, pytest, torch, numpy
#                                             (default: mutmut's own venv at /work/venv-mut)
set -euo pipefail
python=${1:-/work/venv-mut/bin/python}
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$repo/src" "$repo/tests" "$repo/pyproject.toml" "$scratch/"
find "$scratch" -name __pycache__ -prune -exec rm -rf {} +
cat > "$scratch/setup.cfg" <<'CFG'
[mutmut]
source_paths=src
only_mutate=src/genmodels/units.py
pytest_add_cli_args_test_selection=
    tests/test_units.py
    src/genmodels/units.py
pytest_add_cli_args=-p no:cacheprovider
CFG
cd "$scratch"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$python" -m mutmut run --max-children 1 > mutmut-run.log 2>&1 || { tail -c 4000 mutmut-run.log; exit 1; }
"$python" -m mutmut results --all true > results.txt
echo "mutants: $(grep -c ': ' results.txt)  killed: $(grep -c ': killed' results.txt)  survived: $(grep -c ': survived' results.txt || true)"
sed 's/^ *genmodels\.units\.x_//; s/__mutmut_[0-9]*//' results.txt | sort | uniq -c  # per function and status
grep -v ': killed' results.txt || true
for name in $(grep -v ': killed' results.txt | sed 's/^ *//; s/:.*//'); do
    "$python" -m mutmut show "$name"
done
