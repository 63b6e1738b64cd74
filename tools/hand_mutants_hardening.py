"""Hand-written one-line mutants of the bad-input checks in checkpoint.py and data/ (issue 15): each
must make tests/test_checkpoint.py or tests/test_data.py fail.
Usage: OMP_NUM_THREADS=1 python tools/hand_mutants_hardening.py  (exit 1 if one survives)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

repo = Path(__file__).resolve().parent.parent
survived = []
mutants = [
    ("checkpoint.py", "shape check gone", "if tuple(got.shape) != tuple(want.shape):", "if False:"),
    ("checkpoint.py", "kind check gone", "if _kind(got.dtype) != _kind(want.dtype):", "if False:"),
    ("checkpoint.py", "finite check gone", "and not torch.isfinite(got).all():", "and False:"),
    ("checkpoint.py", "by-design guard gone", "            if torch.isfinite(want).all():", "            if True:"),
    ("checkpoint.py", "int counted as float", '    if dtype.is_floating_point:\n        return "floating-point"', '    if True:\n        return "floating-point"'),
    ("checkpoint.py", "legacy relative spec name kept", "        spec = dataclasses.replace(spec, name=recorded)", "        pass"),
    ("checkpoint.py", "meta check gone", "    _check_meta(meta, path / META_FILE)\n", ""),
    ("data/base.py", "levels upper bound gone", "2 <= levels <= MAX_LEVELS", "2 <= levels"),
    ("data/files.py", "K limit off by one", "if hi > MAX_LEVELS - 1:", "if hi > MAX_LEVELS:"),
    ("data/files.py", "magic check gone", "    if magic != _NPY_MAGIC:", "    if False:"),
    ("data/files.py", "size check gone", "    _check_npy_size(path)\n", ""),
    ("data/files.py", "spec name relative", "    name = str(path.resolve())", "    name = str(path)"),
    ("data/registry.py", "source relative", 'dataset.source = {"name": dataset.spec.name, "data_dir": None}', 'dataset.source = {"name": name, "data_dir": None}'),
    ("data/registry.py", "empty name allowed", "    if not name.strip():", "    if False:"),
    ("data/files.py", "csv.Error uncaught", "    except csv.Error as e:", "    except KeyError as e:"),
    ("data/files.py", "MemoryError uncaught", "    except MemoryError as e:", "    except KeyError as e:"),
    ("data/files.py", "OSError of exists uncaught", "    except (OSError, ValueError) as e:\n        shown", "    except KeyError as e:\n        shown"),
    ("data/files.py", "text column not named", "if header is not None and text_column and not separated:", "if False:"),
    ("data/base.py", "NaN example not named", "(the first in example \"\n", "(the first in row \"\n"),
]

for file, name, old, new in mutants:
    src = (repo / "src/genmodels" / file).read_text()
    assert src.count(old) == 1, name
    d = Path(tempfile.mkdtemp())
    shutil.copytree(repo / "src", d / "src"); shutil.copytree(repo / "tests", d / "tests"); shutil.copy(repo / "pyproject.toml", d)
    (d / "src/genmodels" / file).write_text(src.replace(old, new))
    tests = ["tests/test_checkpoint.py"] if file == "checkpoint.py" else ["tests/test_data.py", "tests/test_checkpoint.py", "src/genmodels/data"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                       cwd=d, env={**os.environ, "PYTHONPATH": str(d / "src"), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    print(f"{'KILLED ' if r.returncode else 'SURVIVED'} {file}: {name}")
    if not r.returncode:
        survived.append(name)
    shutil.rmtree(d)
sys.exit(1 if survived else 0)
