"""A single static HTML report per benchmark set: leaderboard, bar charts, PSNR-vs-LPIPS scatter and
per-image comparison crops. See ``docs/benchmarks.md``."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rawsynth.errors import InputError
from rawsynth.io import atomic_output

from ..bench import Bench
from ..files import encode_png8
from ..isp import develop_raw
from ..scoring.metrics import METRICS
from ..scoring.pairing import pair_predictions
from ..scoring.score import load_prediction, read_leaderboard
from .published import citation
from .table import Row, convention_text, rank_marks, table_rows

__all__ = ["build_report"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;color:#222;
padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #ddd}
h3{font-size:16px;margin:20px 0 6px}.meta{color:#555;margin:0 0 8px}
table.lb{border-collapse:collapse;margin:8px 0}table.lb th,table.lb td{border:1px solid #ccc;padding:3px 8px}
table.lb td.num{text-align:right;font-variant-numeric:tabular-nums}table.lb tr.pub td{color:#666;background:#fafafa}
table.lb td.r1{font-weight:700}table.lb td.r2{text-decoration:underline}table.lb th{background:#f0f0f0}
img.plot{max-width:100%;border:1px solid #eee}.row{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 18px}
figure{margin:0}figure img{image-rendering:pixelated;display:block;border:1px solid #ccc}
figcaption{font-size:12px;color:#444;max-width:260px}.note{color:#555;font-size:13px;max-width:1000px}
"""


def _png_b64(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png8(rgb)).decode("ascii")


def _fig_b64(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(rows: list[Row], metrics: list[str]) -> str:
    from matplotlib.figure import Figure

    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 0.26 * len(rows) * nrow + 1.2 * nrow))
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        sel = [r for r in rows if m in r.metrics and math.isfinite(r.metrics[m])]
        y = np.arange(len(sel))
        ax.barh(y, [r.metrics[m] for r in sel], color=["#bbbbbb" if r.published else "#d9534f" for r in sel])
        ax.set_yticks(y, [r.method for r in sel], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{METRICS[m].label} {METRICS[m].arrow}", fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return _fig_b64(fig)


def _scatter(rows: list[Row]) -> str | None:
    pts = [r for r in rows if "psnr" in r.metrics and "lpips" in r.metrics]
    if not pts:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot(1, 1, 1)
    for r in pts:
        ax.scatter(r.metrics["lpips"], r.metrics["psnr"], c="#999999" if r.published else "#d9534f",
                   marker="o" if r.published else "s", s=28 if r.published else 50, zorder=2 if r.published else 3)
        ax.annotate(r.method, (r.metrics["lpips"], r.metrics["psnr"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points", color="#666666" if r.published else "#000000")
    ax.set_xlabel("LPIPS ↓ (perception)")
    ax.set_ylabel("PSNR ↑ (fidelity)")
    ax.set_title("Fidelity vs perception (red squares: ours; grey: published)", fontsize=10)
    ax.grid(alpha=0.3)
    return _fig_b64(fig)


def _table(rows: list[Row], metrics: list[str]) -> str:
    marks = {m: rank_marks(rows, m) for m in metrics}
    head = "".join(f"<th>{METRICS[m].label} {METRICS[m].arrow}</th>" for m in metrics)
    out = [f'<table class="lb"><tr><th>Method</th><th>Source</th>{head}<th>Convention</th></tr>']
    for i, r in enumerate(rows):
        cells = []
        for m in metrics:
            v = r.metrics.get(m)
            rank = marks[m].get(i)
            cls = "num" + (f" r{rank}" if rank else "")
            cells.append(f'<td class="{cls}">{"–" if v is None else f"{v:.4f}"}</td>')
        out.append(f'<tr class="{"pub" if r.published else "ours"}"><td>{html.escape(r.method)}</td>'
                   f'<td>{html.escape(r.source)}</td>{"".join(cells)}<td>{html.escape(convention_text(r))}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(img[top:top + s, left:left + s])


def _per_image_scores(bench: Bench, entry: dict) -> dict:
    p = bench.root / entry.get("summary", "")
    csv_path = p.parent / "scores.csv" if p.name == "summary.json" else None
    if not csv_path or not csv_path.is_file():
        return {}
    with open(csv_path, newline="") as f:
        return {row["key"]: row for row in csv.DictReader(f)}


def _comparisons(bench: Bench, n: int, crop: int, scale: int) -> str:
    if n <= 0 or not bench.keys:
        return ""
    idx = np.unique(np.linspace(0, len(bench.keys) - 1, min(n, len(bench.keys))).round().astype(int))
    keys = [bench.keys[i] for i in idx]
    methods = []
    for e in read_leaderboard(bench)["entries"]:
        pred = Path(e.get("pred_dir", ""))
        files = {}
        if pred.is_dir():
            try:
                files = pair_predictions(pred, bench.keys, tuple(e.get("suffixes", ())), True, check=False).files
            except Exception:  # noqa: BLE001 - a moved/changed folder only loses its crops in the report
                files = {}
        methods.append((e, files, _per_image_scores(bench, e)))
    parts = [f"<h3>Per-image comparisons (centre {crop}×{crop} crops, shown ×{scale})</h3>"]
    for key in keys:
        meta = bench.meta(key)
        tiles = []
        if bench.has_gt:
            tiles.append(("GT (gt_srgb)", bench.gt_srgb(key)))
        tiles.append(("Two-stage input: RAW → bilinear + PTP", develop_raw(bench.raw_dn(key), meta)))
        for e, files, scores in methods:
            label = e["method"]
            row = scores.get(key, {})
            extra = ", ".join(f"{METRICS[m].label} {float(row[m]):.3f}" for m in ("psnr", "lpips", "musiq")
                              if row.get(m) not in (None, "", "nan"))
            try:
                img = load_prediction(files[key], e.get("pred_space", "srgb"), meta) if key in files else None
            except InputError:
                img = None
            tiles.append((f"{label}" + (f" ({extra})" if extra else ""), img))
        figs = []
        for label, img in tiles:
            if img is None:
                figs.append(f"<figure><figcaption>{html.escape(label)}: no prediction</figcaption></figure>")
                continue
            c = _center_crop(img, crop)
            figs.append(f'<figure><img src="{_png_b64(c)}" width="{c.shape[1] * scale}" height="{c.shape[0] * scale}"'
                        f' alt="{html.escape(label)} {html.escape(key)}"><figcaption>{html.escape(label)}'
                        "</figcaption></figure>")
        info = f"pattern {meta.get('pattern')}"
        if meta.get("noise", {}).get("iso"):
            info += f", ISO {meta['noise']['iso']:.0f}"
        parts.append(f"<p class=\"meta\"><b>{html.escape(key)}</b> — {html.escape(info)}</p>"
                     f'<div class="row">{"".join(figs)}</div>')
    return "\n".join(parts)


def _crop_text(crop: dict | None) -> str:
    """``"centre 512×512 crop"``, ``"full image"`` or ``"DND's 512×512 boxes"`` for a recipe's ``crop``."""
    if not crop:
        return "DND's own boxes"
    if crop.get("policy") == "center":
        return f"centre {crop['size']}×{crop['size']} crop"
    if crop.get("policy") == "full":
        return "full image"
    return f"crop policy {crop.get('policy')}"


def _section(bench: Bench, crops: int, crop_size: int, scale: int, published: bool) -> str:
    m = bench.manifest
    rows = table_rows(bench, published)
    metrics = [k for k in METRICS if any(k in r.metrics for r in rows)]
    recipe = m.get("recipe", {})
    state = "" if m.get("complete", True) else ", INCOMPLETE"
    desc = (f"{len(bench.keys)} images ({m.get('expected', '?')} expected{state}); source: {bench.layout_title}"
            f"; {_crop_text(recipe.get('crop'))}; seed {recipe.get('seed', '–')}; "
            f"{'with' if bench.has_gt else 'no'} ground truth; built with rawsynth "
            f"{m.get('versions', {}).get('rawsynth', '?')}")
    out = [f"<h2>{html.escape(bench.title)}</h2>", f'<p class="meta">{html.escape(desc)} — '
           f"<code>{html.escape(str(bench.root))}</code></p>"]
    if rows:
        out.append(_table(rows, metrics))
        out.append('<p class="note">Bold: best; underlined: second best (over all rows shown). Grey rows are the '
                   "paper's published numbers.</p>")
        out.append(f'<h3>Metrics</h3><img class="plot" alt="bar charts of every metric" src="{_bars(rows, metrics)}">')
        sc = _scatter(rows)
        if sc:
            out.append(f'<h3>Fidelity vs perception</h3><img class="plot" alt="PSNR versus LPIPS" src="{sc}">')
    else:
        out.append("<p>No method scored yet: run <code>python -m benchmarks score</code>.</p>")
    out.append(_comparisons(bench, crops, crop_size, scale))
    return "\n".join(out)


def build_report(bench_dirs: list[str | os.PathLike], out: str | os.PathLike, *, crops: int = 4,
                 crop_size: int = 128, scale: int = 2, published: bool = True) -> Path:
    """Write the HTML report of one or more benchmarks to ``out`` (atomically) and return its path."""
    benches = [Bench.load(d) for d in bench_dirs]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017 - Python 3.10
    body = [f"<h1>RAW restoration benchmarks</h1><p class=\"meta\">Generated {now} by "
            "<code>python -m benchmarks report</code>.</p>"]
    body += [_section(b, crops, crop_size, scale, published) for b in benches]
    if published:
        body.append(f'<p class="note">Published numbers: {html.escape(citation())}, Tables 1 and 8. They were measured '
                    "on the authors' own synthetic test sets, which were never released; ours follow the same recipe "
                    "on the same public images but are different draws, so compare trends, not decimals.</p>")
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>Benchmarks: {html.escape(', '.join(b.title for b in benches))}</title>"
           f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(doc)
    return out
