"""``results.html``: a run's or a bench's report as one self-contained page.

The page is built from the files a run or a bench already writes (results.json and the PNGs beside
it), so it can be rebuilt at any time::

    python -m genmodels.report_page RUN_OR_BENCH_DIR      # writes RUN_OR_BENCH_DIR/results.html

It holds the leaderboard (one table, ranked per data set by test bits/dim, or NLL on continuous
data, each figure with its kind), the bench's curves, and one section per model: its test and
validation figures, how its samples were drawn, its sample grid and curves. Images are embedded as
base64 data URIs and the style sheet is inline: the page opens from disk with no network and no
JavaScript. At 23 models a bar of links to every model stays at the top while scrolling, and the
leaderboard's header stays visible while it scrolls.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import UserError
from .plotting import describe_sampling

__all__ = ["write_report_page", "read_results", "report_page_html", "main"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fff; }
main { padding: 0 1.5rem 3rem; max-width: 1500px; }
nav { position: sticky; top: 0; z-index: 2; background: #f4f4f4; border-bottom: 1px solid #ccc;
      padding: .4rem 1.5rem; font-size: .85rem; line-height: 1.6; }
nav a { margin-right: .7rem; white-space: nowrap; color: #0645ad; text-decoration: none; }
h1 { font-size: 1.4rem; margin: 1rem 0 .3rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
section { scroll-margin-top: 4.5rem; }
p.note, .muted { color: #555; font-size: .85rem; }
.board { max-height: 75vh; overflow: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { padding: .25rem .55rem; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.board thead th { position: sticky; top: 0; background: #fafafa; box-shadow: 0 1px 0 #ccc; }
tr.skipped td { color: #777; }
figure { margin: .6rem 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.row { display: flex; flex-wrap: wrap; gap: .5rem 2rem; align-items: flex-start; }
.row figure { flex: 0 1 auto; }
.row figure.wide { flex: 1 1 560px; }
.row figure.wide img { width: 100%; }
figcaption { font-size: .8rem; color: #555; }
.kind-exact { color: #1a7f37; } .kind-bound { color: #9a6700; } .kind-estimate { color: #8250df; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _anchor(row: dict[str, Any]) -> str:
    name = f"{row.get('data', '')}-{row.get('recipe') or row['model']}"
    return "model-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _image(path: Path, caption: str, css: str = "") -> str:
    """A PNG embedded as a data URI, with its caption (the file's name says where it came from)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure class="{css}"><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)} <span class=\"muted\">({_e(path.name)})</span></figcaption></figure>")


def _headline(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row's ranking figure: its lowest test NLL (per dimension where there is one)."""
    records = [r for r in row.get("test") or [] if r.get("nll_nats") is not None]
    if not records:
        return None
    return min(records, key=lambda r: r["bits_per_dim"] if r.get("bits_per_dim") is not None else r["nll_nats"])


def _kind_label(record: dict[str, Any]) -> str:
    parts = []
    if record.get("samples") is not None:
        parts.append(f"k={record['samples']}")
    if record.get("evaluations") is not None:
        parts.append(f"NFE={record['evaluations']:g}")
    options = [f"{k}={v}" for k, v in (record.get("options") or {}).items()]
    parts += [o for o in options if o not in parts]
    return f"{record['kind']} ({', '.join(parts)})" if parts else record["kind"]


def _coverage(row: dict[str, Any]) -> str:
    examples, size = row.get("test_examples"), row.get("test_split_size")
    return f"first {examples:,} of {size:,} test examples" if examples and size and examples < size else ""


def _quality(row: dict[str, Any], metric: str) -> dict[str, Any] | None:
    return next((q for q in row.get("sample_quality") or [] if q.get("metric") == metric), None)


def _figure_text(value: float | None, stderr: float | None = None, digits: int = 4) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}g}" + (f" ± {stderr:.2g}" if stderr is not None else "")


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured rows per data set, best first (by bits/dim or NLL, then FD); then the skipped."""
    def key(row: dict[str, Any]) -> tuple:
        head = _headline(row)
        fd = _quality(row, "fd")
        figure = None if head is None else head["bits_per_dim"] if head.get("bits_per_dim") is not None else head["nll_nats"]
        return (row.get("data", ""), figure is None, figure if figure is not None else 0.0,
                fd is None, fd["value"] if fd else 0.0, row["model"])

    return sorted((r for r in rows if "skipped" not in r), key=key) + [r for r in rows if "skipped" in r]


def _leaderboard(rows: list[dict[str, Any]]) -> str:
    with_fd = any(_quality(r, "fd") for r in rows)
    head = ["#", "data", "model", "test NLL", "unit", "kind (measure)", "params", "train s", "steps (best)", "sampling"]
    if with_fd:
        head.insert(6, "FD (genmodels features)")
    numeric = {"#", "test NLL", "params", "train s", "steps (best)", "FD (genmodels features)"}
    out = ['<div class="board"><table id="leaderboard"><thead><tr>']
    out += [f'<th class="{"num" if h in numeric else ""}">{_e(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    rank, data = 0, None
    for row in _ranked(rows):
        link = f'<a href="#{_anchor(row)}">{_e(row.get("recipe") or row["model"])}</a>'
        if "skipped" in row:
            cells = ["", _e(row.get("data", "")), link, f"skipped: {_e(row['skipped'])}"] + [""] * (len(head) - 4)
            out.append('<tr class="skipped">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        rank = 1 if row.get("data") != data else rank + 1
        data = row.get("data")
        record = _headline(row)
        if record is None:
            nll, unit, kind = "—", "", f"none (no likelihood){'; ' + row['model'] + ' is ranked by FD' if _quality(row, 'fd') else ''}"
        else:
            in_bits = record.get("bits_per_dim") is not None
            stderr = record.get("stderr_nats")
            if in_bits and stderr is not None:
                stderr /= record["dims"] * math.log(2)  # bits/dim = nats / (D ln 2), its error alike
            nll = _figure_text(record["bits_per_dim"] if in_bits else record["nll_nats"], stderr)
            unit = "bits/dim" if in_bits else "nats/example (density)"
            coverage = _coverage(row)
            kind = (f'<span class="kind-{_e(record["kind"])}">{_e(_kind_label(record))}</span> ({_e(record["measure"])})'
                    + (f"; {_e(coverage)}" if coverage else ""))
        cells = [str(rank), _e(row.get("data", "")), link, nll, unit, kind, f"{row.get('num_parameters', 0):,}",
                 f"{row.get('train_seconds', 0.0):.1f}", f"{row.get('steps', '—')} ({row.get('best_step', '—')})",
                 _e(describe_sampling(row.get("sampling") or {}) or "defaults")]
        if with_fd:
            fd = _quality(row, "fd")
            cells.insert(6, _figure_text(fd["value"], fd.get("stderr")) if fd else "—")
        classes = [("num" if h in numeric else "") for h in head]
        out.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' for c, v in zip(classes, cells)) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _records_table(records: list[dict[str, Any]], caption: str) -> str:
    if not records:
        return ""
    out = [f"<h3>{_e(caption)}</h3><table><thead><tr><th>measure</th><th>kind</th><th class=\"num\">NLL (nats)</th>"
           "<th class=\"num\">bits/dim</th><th class=\"num\">examples</th><th>terms (nats)</th></tr></thead><tbody>"]
    for r in records:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in (r.get("terms_nats") or {}).items())
        out.append(f"<tr><td>{_e(r['measure'])}</td><td>{_e(_kind_label(r))}</td>"
                   f"<td class=\"num\">{_figure_text(r['nll_nats'], r.get('stderr_nats'), 6)}</td>"
                   f"<td class=\"num\">{_figure_text(r.get('bits_per_dim'), None, 5)}</td>"
                   f"<td class=\"num\">{r.get('examples', '')}</td><td>{_e(terms)}</td></tr>")
    return "\n".join(out + ["</tbody></table>"])


def _figures_table(row: dict[str, Any]) -> str:
    figures = [(f["name"], f["mean"], f.get("stderr"), f.get("examples")) for f in row.get("test_figures") or []]
    figures += [(f"{q['metric']} ({q.get('samples', '?')} samples, genmodels features)", q["value"], q.get("stderr"), q.get("samples"))
                for q in row.get("sample_quality") or []]
    if not figures:
        return ""
    out = ["<h3>Other test figures</h3><table><thead><tr><th>figure</th><th class=\"num\">value</th>"
           "<th class=\"num\">examples</th></tr></thead><tbody>"]
    out += [f"<tr><td>{_e(name)}</td><td class=\"num\">{_figure_text(value, stderr)}</td><td class=\"num\">{_e(n or '')}</td></tr>"
            for name, value, stderr, n in figures]
    return "\n".join(out + ["</tbody></table>"])


def _run_folder(row: dict[str, Any], base: Path) -> Path | None:
    """The row's run folder: as recorded, or the same path's tail under ``base`` (a moved bench)."""
    recorded = Path(row.get("run_dir") or ".")
    candidates = [recorded] if recorded.is_absolute() else []
    candidates += [base.joinpath(*recorded.parts[i:]) for i in range(len(recorded.parts))]
    candidates.append(base / str(row.get("data", "")) / str(row.get("recipe") or row["model"]))
    return next((c for c in candidates if (c / "results.json").is_file() or (c / "samples.png").is_file()), None)


def _model_section(row: dict[str, Any], folder: Path | None, base: Path) -> str:
    name = row.get("recipe") or row["model"]
    out = [f'<section id="{_anchor(row)}"><h2>{_e(name)} <span class="muted">on {_e(row.get("data", ""))}</span></h2>']
    if "skipped" in row:
        return "\n".join(out + [f"<p>Skipped: {_e(row['skipped'])}</p></section>"])
    facts = [f"model {row['model']}", f"{row.get('num_parameters', 0):,} parameters",
             f"{row.get('steps', '?')} steps, best on validation at step {row.get('best_step', '?')}",
             f"{row.get('train_seconds', 0.0):.1f} s of training", f"{row.get('examples_per_second', 0.0):.0f} training examples/s"]
    sampling = describe_sampling(row.get("sampling") or {})
    facts.append(f"samples drawn with {sampling}" if sampling else "samples drawn at the model's defaults")
    if row.get("sampling", {}).get("seconds"):
        facts.append(f"{row['sampling']['seconds']:.2f} s to draw them")
    out.append(f"<p>{_e('; '.join(facts))}.</p>")
    coverage = _coverage(row)
    tables = [_records_table(row.get("test") or [], "Test" + (f" ({coverage})" if coverage else "")),
              _records_table(row.get("validation") or [], "Validation (the chosen checkpoint, validation settings)"),
              _figures_table(row)]
    out.append('<div class="row">' + "".join(f"<div>{t}</div>" for t in tables if t) + "</div>")
    for check in row.get("expected") or []:
        got = "not reported" if check.get("got") is None else f"{check['got']:.5g}"
        out.append(f"<p class=\"note\">expected {_e(check['figure'])} {check['expected']:.5g} ± {check['tolerance']:.2g}, "
                   f"got {_e(got)}: {'ok' if check['within'] else '<b>outside</b>'}</p>")
    pictures = []
    if folder is not None:
        pictures = [(folder / "samples.png", "samples"), (folder / "loss_curves.png", "training and validation curves")]
        pictures += [(p, p.stem.replace("_", " ")) for p in sorted(folder.glob("*.png"))
                     if p.name not in ("samples.png", "loss_curves.png")]
    else:
        pictures = [(base / f"samples-{row.get('data')}-{row['model']}.png", "samples")]
    found = [_image(path, caption, "" if caption == "samples" else "wide") for path, caption in pictures if path.is_file()]
    out.append('<div class="row">' + "".join(found) + "</div>" if found else '<p class="muted">no pictures found beside the results</p>')
    return "\n".join(out + ["</section>"])


def _bench_figures(base: Path, datasets: list[str]) -> str:
    out = []
    for data in datasets:
        found = [_image(base / f"{stem}-{data}.png", caption) for stem, caption in (
            ("loss_curves", f"{data}: training and validation curves, one row per family"),
            ("bpd_vs_time", f"{data}: validation bits/dim against training time"),
            ("montage", f"{data}: every model's samples")) if (base / f"{stem}-{data}.png").is_file()]
        if found:
            out.append(f'<section id="figures-{_e(data)}"><h2>Figures: {_e(data)}</h2>{"".join(found)}</section>')
    return "\n".join(out)


def report_page_html(results: dict[str, Any], base: Path) -> str:
    """The page for ``results`` (a bench's results.json, with ``rows``, or a run's), whose pictures
    lie under ``base``."""
    bench = "rows" in results
    rows = results["rows"] if bench else [results]
    datasets = list(dict.fromkeys(str(r.get("data", "")) for r in rows))
    title = (f"genmodels bench: {len(rows)} model{'s' * (len(rows) != 1)} on {', '.join(datasets)}" if bench
             else f"genmodels run: {results['model']} on {results.get('data', '')}")
    links = [f'<a href="#leaderboard-section">leaderboard</a>']
    links += [f'<a href="#figures-{_e(d)}">figures {_e(d)}</a>' for d in datasets if bench]
    links += [f'<a href="#{_anchor(r)}">{_e(r.get("recipe") or r["model"])}</a>' for r in _ranked(rows)]
    about = []
    if bench:
        if results.get("suite"):
            about.append(f"suite {results['suite']}")
        if results.get("wall_seconds") is not None:
            about.append(f"{results['wall_seconds']:.0f} s wall time")
        machine = results.get("machine") or {}
        if machine:
            about.append(f"{machine.get('processor', '')}, {machine.get('threads', '?')} threads, "
                         f"CUDA {'yes' if machine.get('cuda') else 'no'}")
        about += [f"{k} {v}" for k, v in (results.get("versions") or {}).items()]
    sections = [_model_section(r, _run_folder(r, base) if bench else base, base) for r in _ranked(rows)]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<nav>{' '.join(links)}</nav><main>", f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e("; ".join(about))}</p>' if about else "",
        '<section id="leaderboard-section"><h2>Leaderboard</h2>',
        '<p class="note">Test split, the checkpoint best on validation. Ranked per data set by test bits/dim (NLL of the '
        "discrete data per dimension; nats per example of the density on continuous data), then by FD; each figure "
        "states its kind: <b>exact</b>, a <b>bound</b> (an upper bound on the NLL) or an <b>estimate</b> (with the "
        "samples k or network evaluations behind it). Models without a likelihood follow.</p>",
        _leaderboard(rows), "</section>",
        _bench_figures(base, datasets) if bench else "",
        *sections, "</main></body></html>",
    ]) + "\n"


def read_results(results: str | Path) -> tuple[dict[str, Any], Path]:
    """A run's or a bench's results.json (given it or its folder), parsed, and its folder."""
    path = Path(results)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder, so no results.json here; give a run or bench folder "
                        "(or its results.json)")
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no results.json here; give a run or bench folder (or its results.json)")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not readable JSON ({error}); rerun the run or bench that wrote it") from None
    _check_results(data)
    return data, path.parent


def _check_results(data: Any) -> None:
    if not isinstance(data, dict) or ("rows" not in data and "model" not in data):
        raise UserError("these results are neither a run's (no 'model') nor a bench's (no 'rows') results.json")


def write_report_page(results: str | Path | dict[str, Any], out_path: str | Path | None = None) -> Path:
    """Write ``results.html`` for a run or a bench.

    Args:
        results: a results.json path (a run's or a bench's), its folder, or its parsed content.
        out_path: the page to write; by default results.html beside results.json. The pictures are
            looked for in the folder of ``results`` (or of ``out_path`` when given a dict).

    Returns:
        The page's path.
    """
    if isinstance(results, dict):
        if out_path is None:
            raise UserError("write_report_page needs out_path when given results as a dict")
        data, base = results, Path(out_path).parent
        _check_results(data)
    else:
        data, base = read_results(results)
    out = Path(out_path) if out_path is not None else base / "results.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_page_html(data, base), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m genmodels.report_page DIR [--out FILE]``: (re)build a run's or a bench's page."""
    parser = argparse.ArgumentParser(prog="python -m genmodels.report_page", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a run or bench folder (or its results.json)")
    parser.add_argument("--out", help="the page to write (default: results.html beside results.json)")
    args = parser.parse_args(argv)
    try:
        print(write_report_page(args.folder, args.out))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
