"""The bench's leaderboard: one Markdown table, one line per model and data set.

Columns: the kind of the headline test figure (exact, a bound, an estimate, none), its NLL in nats
per example ± standard error and bits/dim, the sample quality of the best checkpoint in the data's
feature space (FD, KID; the space is named above the table, with its hash), the standard FID where
``--inception-weights`` gave one, parameters and training seconds. Models that refused the data are
listed with their reason. Rows are ordered by data set, then by bits/dim (or NLL on continuous
data), best first; models with no likelihood come after, by FD.
"""

from __future__ import annotations

import math
from typing import Any

from .evaluate import LikelihoodRecord

__all__ = ["leaderboard_markdown"]


def _headline(row: dict[str, Any]) -> dict[str, Any] | None:
    return (row.get("test") or [None])[0]


def _sort_key(row: dict[str, Any]) -> tuple:
    head = _headline(row)
    quality = {q["metric"]: q["value"] for q in row.get("sample_quality") or []}
    if "skipped" in row:
        return (row["data"], 3, 0.0)
    if head is not None:
        value = head.get("bits_per_dim")
        return (row["data"], 0, value if value is not None else head["nll_nats"])
    return (row["data"], 1 if "fd" in quality else 2, quality.get("fd", math.inf))


def _quality(row: dict[str, Any], metric: str) -> str:
    found = [q for q in row.get("sample_quality") or [] if q["metric"] == metric]
    if not found:
        return "—"
    q = found[0]
    err = f" ± {q['stderr']:.2g}" if q.get("stderr") is not None else ""
    return f"{q['value']:.4g}{err}"


def _feature_spaces(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Feature network name → its SHA-256 prefix, for every space a row was measured in."""
    return {q["features"]: q["features_sha256"][:12] for r in rows for q in r.get("sample_quality") or []}


def leaderboard_markdown(rows: list[dict[str, Any]]) -> str:
    """The leaderboard of bench rows (results.json's), as one Markdown table with its legend."""
    measured = [r for r in rows if "skipped" not in r]
    spaces = _feature_spaces(measured)
    counts = sorted({q["samples"] for r in measured for q in r.get("sample_quality") or []})
    inception = any(r.get("inception_fid") for r in measured)
    recipes = any(r.get("recipe") for r in rows)
    lines = ["Leaderboard: test split, the checkpoint best on validation. NLL in nats per example ± standard "
             "error of the headline measure, whose kind says what it is (exact, a bound, an estimate); lower is better."]
    if spaces:
        lines.append(
            "Sample quality of the same checkpoint against the test split, in the feature space "
            + ", ".join(f"`{name}` (sha256 {sha}…)" for name, sha in spaces.items())
            + f" (not Inception; {'/'.join(map(str, counts))} samples; FD is biased upwards with fewer samples).")
    lines.append("")
    head = ["data", "model"] + (["recipe"] if recipes else []) + ["kind", "test NLL (nats)", "bits/dim"]
    if spaces:
        head += ["FD (genmodels features)", "KID"]
    if inception:
        head += ["FID (Inception-v3)"]
    head += ["params", "train s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 + recipes else "---:" for i in range(len(head))) + "|"]
    for row in sorted(rows, key=_sort_key):
        cells = [str(row["data"]), str(row["model"])] + ([row.get("recipe") or "—"] if recipes else [])
        if "skipped" in row:
            cells += [f"skipped: {row['skipped']}"] + [""] * (len(head) - len(cells) - 1)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        record = _headline(row)
        if record is None:
            cells += ["none", "—", "—"]
        else:
            label = LikelihoodRecord.from_json(record).kind_label
            kind = label + (f", {record['measure']}" if record["measure"] not in ("log_prob", record["kind"]) else "")
            bpd = record.get("bits_per_dim")
            cells += [kind, f"{record['nll_nats']:.3f} ± {record['stderr_nats']:.2g}", "—" if bpd is None else f"{bpd:.4f}"]
        if spaces:
            cells += [_quality(row, "fd"), _quality(row, "kid")]
        if inception:
            fid = row.get("inception_fid") or {}
            cells.append(f"{fid['value']:.4g}" if "value" in fid else ("skipped" if fid else "—"))
        cells += [f"{row['num_parameters']:,}", f"{row['train_seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
