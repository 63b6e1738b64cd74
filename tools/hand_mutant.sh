#!/usr/bin/env bash
# One hand-made mutant: replace an exact piece of text (once) in a scratch copy and run the tests.
# Used to check that a new test kills a survivor of tools/mutation_training.sh without a whole run.
#
# Usage: tools/hand_mutant.sh FILE 'OLD TEXT' 'NEW TEXT' TEST...   (prints killed/SURVIVED)
#   e.g. tools/hand_mutant.sh src/genmodels/evaluate.py 'max(n - 1, 1)' 'max(n - 1, 2)' tests/test_evaluate.py
set -euo pipefail
file=$1 old=$2 new=$3
shift 3
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$repo/src" "$repo/tests" "$repo/pyproject.toml" "$scratch/"
"$python" - "$scratch/$file" "$old" "$new" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{text.count(old)} matches of {old!r} in {path}; give a piece that occurs once")
open(path, "w").write(text.replace(old, new))
PY
cd "$scratch"
if OMP_NUM_THREADS=1 PYTHONPATH="$scratch/src" "$python" -m pytest -p no:cacheprovider -q -x -rfE "$@" > log.txt 2>&1; then
    echo "SURVIVED: $old -> $new"
else
    echo "killed: $old -> $new ($(grep -m1 -oE '(FAILED|ERROR) [^ ]+' log.txt || echo 'tests failed'))"
fi
