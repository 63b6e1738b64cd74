"""Hand-written one-line mutants of src/genmodels/units.py that mutmut does not generate (module-level
constants, off-by-one level counts, dropped terms); each must make tests/test_units.py or units.py's
doctests fail. Usage: OMP_NUM_THREADS=1 python tools/hand_mutants_units.py  (exit 1 if one survives)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

repo = Path(__file__).resolve().parent.parent
mutants = [
    ("dequantize K+1", "return (x.to(torch.float32) + u) / levels", "return (x.to(torch.float32) + u) / (levels + 1)"),
    ("dequantize K-1", "return (x.to(torch.float32) + u) / levels", "return (x.to(torch.float32) + u) / (levels - 1)"),
    ("log-jacobian K+1", "return -dims * math.log(levels)", "return -dims * math.log(levels + 1)"),
    ("log-jacobian K-1", "return -dims * math.log(levels)", "return -dims * math.log(levels - 1)"),
    ("log q sign", "return log_density_y - log_q_u + dequantization_log_jacobian(dims, levels)", "return log_density_y + log_q_u + dequantization_log_jacobian(dims, levels)"),
    ("log q dropped", "return log_density_y - log_q_u + dequantization_log_jacobian(dims, levels)", "return log_density_y + dequantization_log_jacobian(dims, levels)"),
    ("scale logdet whole batch", "y[0].numel() * LN2", "y.numel() * LN2"),
    ("scale logdet ln 2 missing", "y[0].numel() * LN2", "y[0].numel() * 1.0"),
    ("logit drop 1-2a", "math.log(1.0 - 2.0 * alpha) - torch.log(s) - torch.log1p(-s))", "- torch.log(s) - torch.log1p(-s))"),
    ("logit sign", "math.log(1.0 - 2.0 * alpha) - torch.log(s) - torch.log1p(-s))", "math.log(1.0 - 2.0 * alpha) + torch.log(s) + torch.log1p(-s))"),
    ("quantize clamp K", "torch.clamp(torch.floor(y * levels), 0, levels - 1)", "torch.clamp(torch.floor(y * levels), 0, levels)"),
    ("quantize round", "torch.floor(y * levels)", "torch.round(y * levels)"),
    ("inverse alpha default", "def inverse_logit_transform(z: Tensor, alpha: float = 0.05)", "def inverse_logit_transform(z: Tensor, alpha: float = 0.01)"),
    ("LN2 wrong", "LN2 = math.log(2.0)", "LN2 = math.log(2.0) * 1.0001"),
    ("bits per dim", "return nll_nats / (dims * LN2)", "return nll_nats / dims / math.log(2.0001)"),
]
src = (repo / "src/genmodels/units.py").read_text()
survived = []
for name, old, new in mutants:
    assert src.count(old) == 1, name
    d = Path(tempfile.mkdtemp())
    shutil.copytree(repo / "src", d / "src"); shutil.copytree(repo / "tests", d / "tests"); shutil.copy(repo / "pyproject.toml", d)
    (d / "src/genmodels/units.py").write_text(src.replace(old, new))
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "tests/test_units.py", "src/genmodels/units.py"],
                       cwd=d, env={**os.environ, "PYTHONPATH": str(d / "src"), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    print(f"{'KILLED ' if r.returncode else 'SURVIVED'} {name}")
    if not r.returncode:
        survived.append(name)
    shutil.rmtree(d)
sys.exit(1 if survived else 0)
