"""A Table-1-style Markdown table from a benchmark's leaderboard, with the paper's published rows.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..bench import Bench
from ..scoring.metrics import METRICS, convention
from ..scoring.score import read_leaderboard
from .published import citation, published_rows

__all__ = ["Row", "table_rows", "rank_marks", "render_markdown", "convention_text", "describe_set"]


@dataclass(frozen=True)
class Row:
    """A table row: ``method``, ``source`` (``"ours, n=100"`` or ``"published, Table 1"``), metric values and the
    convention of each PSNR/SSIM value (``{"psnr": "RGB, 3 channels"}``)."""

    method: str
    source: str
    metrics: dict
    published: bool
    conventions: dict = None


def convention_text(row: Row) -> str:
    """``"PSNR/SSIM: RGB, 3 channels; PSNR-Y: Y of YCbCr (BT.601)"``: the conventions of the row's values, metrics
    that share one grouped; ``"–"`` when none applies."""
    groups: dict[str, list[str]] = {}
    for m in METRICS:
        c = (row.conventions or {}).get(m)
        if m in row.metrics and c:
            groups.setdefault(c, []).append(METRICS[m].label)
    return "; ".join(f"{'/'.join(labels)}: {c}" for c, labels in groups.items()) or "–"


def describe_set(bench: Bench) -> str:
    """``"100 images, StableSR 512x512 test crops"``: size and source layout (and an incomplete build)."""
    complete = "" if bench.manifest.get("complete", True) else ", INCOMPLETE build"
    return f"{len(bench.keys)} images, {bench.layout_title}{complete}"


def table_rows(bench: Bench, published: bool = True) -> list[Row]:
    """Our leaderboard entries (in scoring order), then the published rows of the same dataset."""
    rows = []
    for e in read_leaderboard(bench)["entries"]:
        n, total = e.get("n"), e.get("images", len(bench.keys))
        src = f"ours, n={n}" + ("" if n == total else f" of {total}")
        metrics = {k: v for k, v in e.get("metrics", {}).items() if v is not None and k in METRICS}
        conv = e.get("conventions") or {k: convention(k) for k in metrics}  # older entries: crop_border 0
        rows.append(Row(e["method"], src, metrics, False, conv))
    if published:
        rows += [Row(r.method, r.source, r.metrics, True, r.conventions) for r in published_rows(bench.dataset)]
    return rows


def rank_marks(rows: list[Row], metric: str) -> dict[int, int]:
    """``{row index: 1 or 2}`` for the best and second-best value of ``metric`` (ties share a rank)."""
    spec = METRICS[metric]
    vals = sorted({r.metrics[metric] for r in rows if metric in r.metrics and math.isfinite(r.metrics[metric])},
                  reverse=not spec.lower_better)
    ranks = {v: i + 1 for i, v in enumerate(vals[:2])}
    return {i: ranks[r.metrics[metric]] for i, r in enumerate(rows)
            if metric in r.metrics and r.metrics[metric] in ranks}


def _cell(v: float | None, mark: int | None) -> str:
    if v is None:
        return "–"
    s = f"{v:.4f}"
    return f"**{s}**" if mark == 1 else f"_{s}_" if mark == 2 else s


def render_markdown(bench_dirs: list[str | os.PathLike], published: bool = True) -> str:
    """One table per benchmark: our methods and the published rows; best value **bold**, second _italic_."""
    parts = []
    for d in bench_dirs:
        bench = Bench.load(d)
        rows = table_rows(bench, published)
        metrics = [m for m in METRICS if any(m in r.metrics for r in rows)]
        parts.append(f"### {bench.title} ({describe_set(bench)})\n")
        if not rows:
            parts.append("_No method scored yet: run `python -m benchmarks score`._\n")
            continue
        marks = {m: rank_marks(rows, m) for m in metrics}
        parts.append("| Method | Source | " + " | ".join(f"{METRICS[m].label}{METRICS[m].arrow}" for m in metrics)
                     + " | Convention |")
        parts.append("|---|---|" + "---:|" * len(metrics) + "---|")
        for i, r in enumerate(rows):
            cells = [_cell(r.metrics.get(m), marks[m].get(i)) for m in metrics]
            parts.append(f"| {r.method} | {r.source} | " + " | ".join(cells) + f" | {convention_text(r)} |")
        parts.append("")
    if published and any("published" in p for p in parts):
        parts.append("**Bold**: best, _italic_: second best, over all rows shown. Published rows are copied from "
                     f"{citation()} (Tables 1 and 8); they were measured on the authors' unreleased test sets, not on "
                     "this rebuild, so they are a reference, not a like-for-like comparison.")
    return "\n".join(parts).rstrip() + "\n"
