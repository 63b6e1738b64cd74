#!/usr/bin/env bash
# Mutation test of src/genmodels/evaluate.py and src/genmodels/training/*.py (mutmut 3), one file per run.
#
# Runs in a scratch copy of the working tree, so neither mutmut's mutants/ folder nor its setup.cfg
# (mutmut reads [tool.mutmut] from pyproject.toml, else [mutmut] from setup.cfg) touch the repository.
# The tests are the trainer's and the evaluator's, without the two that start subprocesses (torchrun,
# bf16 in its own process): a subprocess imports the installed genmodels, not mutmut's mutant copy,
# so it could not kill a mutant anyway. mutmut runs, for each mutant, only the tests that executed the
# mutated function in its first, clean run.
#
# Usage: [MUTATION_TESTS="tests/a.py tests/b.py"] tools/mutation_training.sh [-p PYTHON] FILE [FUNCTION_GLOB...]
#   FILE            e.g. src/genmodels/training/optim.py
#   FUNCTION_GLOB   mutate only these mutants, e.g. 'genmodels.training.loop.x_*' (default: all)
#   MUTATION_TESTS  the test files to run (default: every trainer and evaluator test file below); a
#                   smaller selection is faster, and a mutant it kills is killed by the full one too
#   MUTATION_SCRATCH  keep the scratch copy in this folder; when it already holds a run, resume it
#                   (mutmut 3.8's fork server can deadlock after a restart: kill that run's
#                   processes, then call again with the same folder and, to recheck them, the
#                   names of the mutants it was running)
#   PYTHON          a Python with mutmut>=3.8, pytest, torch, numpy, accelerate, ... (default: /work/venv-mut)
set -euo pipefail
python=/work/venv-mut/bin/python
if [[ ${1:-} == -p ]]; then python=$2; shift 2; fi
target=${1:?usage: tools/mutation_training.sh [-p PYTHON] FILE [FUNCTION_GLOB...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${MUTATION_SCRATCH:-} && -d $MUTATION_SCRATCH/mutants ]]; then
    # Resume an interrupted run (mutmut keeps each verdict in mutants/): bring in the current tests
    # (mutmut collects coverage for tests it has not seen) and run the mutants not yet checked.
    scratch=$MUTATION_SCRATCH
    for dir in "$scratch/tests" "$scratch/mutants/tests"; do rm -rf "$dir"; cp -r "$repo/tests" "$dir"; done
    cd "$scratch"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    "$python" -m mutmut run --max-children 1 "$@" >> mutmut-run.log 2>&1 || { tail -c 4000 mutmut-run.log; exit 1; }
    resumed=1
elif [[ -n ${MUTATION_SCRATCH:-} ]]; then
    scratch=$MUTATION_SCRATCH  # kept, so that a run that hangs can be resumed
    mkdir -p "$scratch"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
fi
if [[ -z ${resumed:-} ]]; then
cp -r "$repo/src" "$repo/tests" "$repo/pyproject.toml" "$scratch/"
find "$scratch" -name __pycache__ -prune -exec rm -rf {} +
# mutmut 3 leaves decorated functions alone (except static/class methods), which would skip
# EMA.update and evaluate_likelihood (@torch.no_grad()) and LikelihoodRecord.kind_label (@property).
# In the scratch copy only, each such decorator is moved below the module as a plain call
# (`EMA.update = torch.no_grad()(EMA.update)`), which means the same and lets mutmut mutate the body.
"$python" - "$scratch/$target" <<'PY'
import re, sys
path = sys.argv[1]
lines = open(path).read().split("\n")
out, tail, cls = [], [], None
for i, line in enumerate(lines):
    if m := re.match(r"class (\w+)", line):
        cls = m.group(1)
    m = re.match(r"( *)@(torch\.no_grad\(\)|property)$", line)
    if m and (d := re.match(r" *def (\w+)", lines[i + 1])):
        deco, name = m.group(2), d.group(1)
        owner = f"{cls}." if m.group(1) else ""
        tail.append(f"{owner}{name} = {deco}({owner}{name})")
        continue
    out.append(line)
open(path, "w").write("\n".join(out + tail) + "\n")
PY
tests=${MUTATION_TESTS:-tests/test_training_ema_settings_logs.py tests/test_training_groups.py tests/test_training_modules.py
    tests/test_evaluate.py tests/test_core.py tests/test_train.py tests/test_kinds_options_and_resume.py tests/test_independent_and_fvsbn.py}
cat > "$scratch/setup.cfg" <<CFG
[mutmut]
source_paths=src
only_mutate=$target
pytest_add_cli_args_test_selection=
$(for t in $tests $target; do echo "    $t"; done)
pytest_add_cli_args=
    -p no:cacheprovider
    -k
    not test_two_processes_share_the_work_through_torch_distributed and not test_bf16_mixed_precision_runs_on_cpu_in_its_own_process
CFG
cd "$scratch"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$python" -m mutmut run --max-children 1 "$@" > mutmut-run.log 2>&1 || { tail -c 4000 mutmut-run.log; exit 1; }
fi
"$python" -m mutmut results --all true | grep -v ': not checked' > results.txt || true  # (not selected)
module=$(echo "${target#src/}" | sed 's/\.py$//; s#/#.#g')
echo "$target: mutants: $(grep -c ': ' results.txt)  killed: $(grep -c ': killed' results.txt || true)" \
     " survived: $(grep -c ': survived' results.txt || true)  timeout: $(grep -c ': timeout' results.txt || true)" \
     " no tests: $(grep -c ': no tests' results.txt || true)"
sed "s/^ *$module\.//; s/__mutmut_[0-9]*//" results.txt | sort | uniq -c  # per function and status
grep -v ': killed' results.txt || true
for name in $(grep -v ': killed' results.txt | sed 's/^ *//; s/:.*//'); do
    "$python" -m mutmut show "$name"
done
