"""results.html: built from the files a run or bench writes, self-contained, readable at 23 models,
and rendered by a real browser (headless Chromium from Debian's packages, where installed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genmodels.bench import run_bench
from genmodels.errors import UserError
from genmodels.report_page import main, report_page_html, write_report_page
from genmodels.training import TrainConfig

CHROMIUM = Path("/usr/bin/chromium")
#: a colour no page chrome uses: where it shows in a screenshot, an embedded sample grid was decoded
MARKER = (255, 0, 255)


def _record(measure: str, kind: str, bpd: float, **extra) -> dict:
    return {"measure": measure, "kind": kind, "nll_nats": bpd * 64 * 0.6931471805599453, "bits_per_dim": bpd,
            "stderr_nats": 0.5, "examples": 360, "dims": 64, "samples": None, "evaluations": None, "terms_nats": {},
            "options": {}, "discrete": True, **extra}


def _row(model: str, bpd: float | None, run_dir: Path) -> dict:
    test = [] if bpd is None else [_record("log_prob", "exact" if bpd < 3 else "estimate", bpd)]
    return {"data": "digits", "model": model, "test": test, "validation": test, "test_figures": [], "test_examples": 360,
            "test_split_size": 360, "num_parameters": 1000, "steps": 10, "best_step": 10, "train_seconds": 1.5,
            "examples_per_second": 100.0, "sampling": {"options": {}, "hubness": False, "seconds": 0.1}, "run_dir": str(run_dir)}


def _png(path: Path, colour=MARKER, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def bench_folder(tmp_path) -> Path:
    """A bench of 23 fake models as a bench writes it (recorded run folders relative to the
    working directory it ran in), with a skipped model and one without a likelihood."""
    out = tmp_path / "bench"
    rows = []
    for i in range(23):
        name = f"model-{i:02d}"
        run = out / "digits" / name
        _png(run / "samples.png")
        _png(run / "loss_curves.png", (0, 128, 255))
        rows.append(_row(name, None if i == 5 else 2.0 + ((i * 7) % 23) / 10, Path("somewhere/else/bench/digits") / name))
    rows[5]["sample_quality"] = [{"metric": "fd", "value": 12.5, "stderr": None, "samples": 500}]
    rows.append({"data": "digits", "model": "picky", "skipped": "wants binary data"})
    _png(out / "loss_curves-digits.png", (0, 200, 0))
    _png(out / "bpd_vs_time-digits.png", (0, 0, 200))
    (out / "results.json").write_text(json.dumps({"wall_seconds": 12.0, "versions": {"genmodels": "0"}, "rows": rows}))
    return out


def test_the_page_ranks_every_model_in_one_leaderboard_and_embeds_every_picture(bench_folder):
    page = write_report_page(bench_folder).read_text()
    board = page[page.index('id="leaderboard"'): page.index("</table>")]
    models = re.findall(r'<a href="#model-digits-([^"]+)">', board)
    assert len(models) == 24 and models[-1] == "picky"  # 23 ranked, then the skipped one
    ranked = [m for m in models if m not in ("picky", "model-05")]
    figures = [float(re.search(rf'#model-digits-{m}".*?<td class="num">([0-9.]+) ±', board, re.S).group(1)) for m in ranked]
    assert figures == sorted(figures)  # best bits/dim first
    assert models[-2] == "model-05"  # no likelihood: after the ranked ones
    assert "2 ± 0.011</td>" in board  # 0.5 nats over 64 dimensions: 0.5 / (64 ln 2) = 0.01127 bits/dim
    assert "skipped: wants binary data" in board and "estimate" in board and "exact" in board
    # self-contained: every picture embedded, nothing fetched, no script
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 23 * 2 + 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//)', page) and "<script" not in page
    for m in models:
        assert f'id="model-digits-{m}"' in page  # every link has its section
    assert "hubness" not in page  # an option that is off is not shown
    assert "FD (genmodels features)" in board and "12.5" in board  # sample quality gets its column


def test_a_run_page_and_a_dict_and_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    _png(run / "samples.png")
    _png(run / "density.png", (10, 10, 10))
    results = {**_row("fvsbn", 2.3, run), "likelihood_kind": "exact"}
    (run / "results.json").write_text(json.dumps(results))
    assert main([str(run)]) == 0 and capsys.readouterr().out.strip() == str(run / "results.html")
    page = (run / "results.html").read_text()
    assert "genmodels run: fvsbn on digits" in page and page.count("<img ") == 2 and "density" in page
    other = write_report_page(results, tmp_path / "elsewhere" / "page.html")
    assert other.read_text() == report_page_html(results, tmp_path / "elsewhere")
    assert main([str(tmp_path / "missing")]) == 2 and "no results.json here" in capsys.readouterr().err
    with pytest.raises(UserError, match="out_path"):
        write_report_page(results)


def test_a_bench_and_its_runs_write_their_pages(tmp_path):
    config = TrainConfig(steps=2, eval_every=1, batch_size=64, num_samples=4, validation_examples=40, test_examples=40)
    run_bench(["independent", "fvsbn"], ["digits"], config, tmp_path / "bench", progress=False)
    page = (tmp_path / "bench" / "results.html").read_text()
    assert 'href="#model-digits-fvsbn"' in page and 'href="#model-digits-independent"' in page
    assert page.count("<img ") >= 4  # both models' grids and curves, and the bench's figures
    assert (tmp_path / "bench" / "digits" / "fvsbn" / "results.html").is_file()


def _chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no browser: apt-get install chromium (as root; .ci/run does) to render results.html")
def test_a_real_browser_renders_the_leaderboard_and_decodes_every_image(bench_folder, tmp_path):
    page = write_report_page(bench_folder)
    # A copy with a probe the page itself does not need (it has no script): after load, count the
    # images that decoded to a non-empty bitmap, and the leaderboard's rows, as it laid them out.
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { const images = [...document.images]; "
        "document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length + '/' + images.length; "
        "document.body.dataset.rows = document.querySelectorAll('#leaderboard tbody tr').length; "
        "document.body.dataset.board = document.getElementById('leaderboard').getBoundingClientRect().height > 100; });"
        "</script></body>")))
    dumped = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dumped.stdout).group(0)
    assert 'data-decoded="48/48"' in body and 'data-rows="24"' in body and 'data-board="true"' in body
    assert "model-00" in dumped.stdout and "Leaderboard" in dumped.stdout

    # The page as a reader sees it: the first model's sample grid (MARKER colour) shows on screen.
    shot = tmp_path / "shot.png"
    run = bench_folder / "digits" / "model-00"
    run_page = write_report_page({**_row("model-00", 2.0, run)}, run / "results.html")
    taken = _chromium("--window-size=1200,1600", f"--screenshot={shot}", run_page.as_uri(), profile=tmp_path / "profile")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    assert (pixels == MARKER).all(axis=1).sum() > 500  # the 40×30 grid, decoded and drawn
    assert len(np.unique(pixels, axis=0)) > 20  # text and tables drawn, not a blank page


def test_genmodels_report_rebuilds_a_runs_page_and_table_as_training_wrote_them(tmp_path, capsys):
    from genmodels.cli import main as genmodels

    run = tmp_path / "run"
    assert genmodels(["train", "independent", "--steps", "1", "--num-samples", "4", "--out", str(run), "--no-progress"]) == 0
    written = {name: (run / name).read_text() for name in ("results.html", "results.md")}
    for name in written:
        (run / name).unlink()
    capsys.readouterr()
    assert genmodels(["report", str(run)]) == 0
    assert capsys.readouterr().out.split() == [str(run / "results.html"), str(run / "results.md")]
    assert {name: (run / name).read_text() for name in written} == written


def test_genmodels_report_rebuilds_a_bench_and_refuses_a_bad_path_in_one_line(bench_folder, tmp_path, capsys):
    from genmodels.cli import main as genmodels

    results = json.loads((bench_folder / "results.json").read_text())
    results["rows"][5]["sample_quality"][0].update(features="genmodels-digits", features_sha256="ab" * 32)  # as a bench writes
    (bench_folder / "results.json").write_text(json.dumps(results))
    assert genmodels(["report", str(bench_folder), "--out", str(tmp_path / "page.html")]) == 0
    page = (tmp_path / "page.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 23 * 2 + 2  # the pictures found beside results.json
    table = (bench_folder / "results.md").read_text()
    assert "| digits | picky | — | — | skipped: wants binary data |" in table and "## Details" in table
    capsys.readouterr()
    for path, says in [(tmp_path / "nowhere", "no such file or folder"), (tmp_path, "no results.json here")]:
        assert genmodels(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"genmodels: error: {path}") and says in err and err.count("\n") == 1, err
