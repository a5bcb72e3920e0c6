"""``rawsynth inspect`` and ``rawsynth preview``: verify a generated dataset and look at it.
See ``docs/format.md``."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .generate import load_manifest
from .isp import ISPParams, process
from .mns import Pattern, SensorParams, demosaic_bilinear, normalize
from .shards import decode_sample, iter_shard, sha256_file

__all__ = ["InspectReport", "inspect_dataset", "preview_dataset", "jpeg_qualities"]


@dataclass
class InspectReport:
    """Counts, histograms and every problem found (``ok`` is ``not problems``)."""

    shards: int = 0
    samples: int = 0
    failures: int = 0
    complete: bool = False
    patterns: Counter = field(default_factory=Counter)
    iso: Counter = field(default_factory=Counter)
    jpeg: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    failure_reasons: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"shards: {self.shards}  samples: {self.samples}  failures: {self.failures}  "
                 f"complete: {self.complete}"]
        for title, counter in (("mode", self.modes), ("pattern", self.patterns), ("ISO", self.iso),
                               ("JPEG quality", self.jpeg), ("failure reason", self.failure_reasons)):
            if counter:
                lines.append(f"{title}:")
                width = max(counter.values())
                for k in sorted(counter, key=_sort_key):
                    n = counter[k]
                    lines.append(f"  {k:>12}  {n:6d}  {'#' * max(1, round(30 * n / width))}")
        lines.append("verification: OK" if self.ok else f"verification: {len(self.problems)} problem(s)")
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _sort_key(label: str):
    """Numeric bins ("100-200") in numeric order, other labels alphabetically after them."""
    head = label.split("-")[0]
    return (0, float(head), label) if head.replace(".", "", 1).isdigit() else (1, 0.0, label)


def jpeg_qualities(degradation: dict | None) -> list[int]:
    """Every JPEG quality recorded in a sample's degradation metadata (any nesting, keys containing 'jpeg')."""
    out: list[int] = []

    def walk(d, under_jpeg=False):
        if isinstance(d, dict):
            for k, v in d.items():
                j = under_jpeg or "jpeg" in k.lower()
                if j and "quality" in k.lower() and isinstance(v, (int, float)):
                    out.append(int(v))
                elif j and k.lower() == "jpeg" and isinstance(v, (int, float)):
                    out.append(int(v))
                else:
                    walk(v, j)
        elif isinstance(d, list):
            for v in d:
                walk(v, under_jpeg)

    walk(degradation)
    return out


def _iso_bin(iso: float) -> str:
    lo = 100 * 2 ** math.floor(math.log2(max(iso, 1) / 100))
    return f"{int(lo)}-{int(lo * 2)}"


def inspect_dataset(out_dir: str | Path) -> InspectReport:
    """Verify ``manifest.json`` against every shard (presence, sha256, sample count, stats) and histogram the
    samples' patterns, ISOs and JPEG qualities. ``out_dir`` may be an fsspec URL (``s3://bucket/prefix``)."""
    from .shards.schema import legacy_meta
    from .storage import is_url, url_to_fs

    if is_url(out_dir):  # an fsspec URL: the same checks through its filesystem
        fs = url_to_fs(out_dir)[0]
        base = out_dir.rstrip("/")

        class _Entry(str):
            name = property(lambda self: self.rsplit("/", 1)[-1])

            def __truediv__(self, n):
                return _Entry(f"{self}/{n}")

            def exists(self):
                return fs.exists(str(self))

            def read_text(self):
                return fs.cat_file(str(self)).decode("utf-8")

        out = _Entry(base)
    else:
        out = Path(out_dir)
    manifest = load_manifest(out_dir)
    if manifest is None:
        raise InputError(out / "manifest.json", "missing manifest", hint="is this a `rawsynth generate` folder?")
    rep = InspectReport(shards=len(manifest.get("shards", [])), complete=bool(manifest.get("complete")))
    if not rep.complete:
        rep.problems.append("manifest says the run is incomplete: finish it with `rawsynth generate ... --resume`")
    for entry in manifest.get("shards", []):
        name = entry["name"]
        tar = out / name
        stats_path = out / name.replace(".tar", ".stats.json")
        if entry.get("sha256") is None:
            if tar.exists():
                rep.problems.append(f"{name}: present but not recorded as done")
            continue
        if not tar.exists():
            rep.problems.append(f"{name}: missing")
            continue
        digest = sha256_file(tar)
        if digest != entry["sha256"]:
            rep.problems.append(f"{name}: sha256 {digest[:12]}… != manifest {entry['sha256'][:12]}…")
            continue
        try:
            stats = json.loads(stats_path.read_text())
        except (OSError, json.JSONDecodeError):
            rep.problems.append(f"{stats_path.name}: missing or unreadable")
            stats = {}
        if stats and stats.get("sha256") != digest:
            rep.problems.append(f"{stats_path.name}: sha256 does not match {name}")
        for f in stats.get("failures", []):
            rep.failure_reasons[f.get("reason", "?")] += 1
        rep.failures += len(stats.get("failures", []))
        n = 0
        try:
            for sample in iter_shard(tar):
                n += 1
                meta = json.loads(sample["meta.json"])
                rep.patterns[meta["pattern"]] += 1
                rep.modes[meta["mode"]] += 1
                rep.iso[_iso_bin(meta["noise"]["iso"])] += 1
                for q in jpeg_qualities(legacy_meta(meta).get("degradation")):  # v2: 0 = no JPEG
                    rep.jpeg[f"{q // 10 * 10}-{q // 10 * 10 + 9}"] += 1
        except Exception as e:  # noqa: BLE001 - any unreadable shard is a verification problem
            rep.problems.append(f"{name}: unreadable ({type(e).__name__}: {e})")
        rep.samples += n
        if n != entry.get("count"):
            rep.problems.append(f"{name}: {n} samples, manifest says {entry.get('count')}")
    return rep


class _UrlName(str):
    """A shard URL with a ``.name`` (its last component), like a :class:`Path`."""

    name = property(lambda self: self.rsplit("/", 1)[-1])


def preview_dataset(out_dir: str | Path, out_png: str | Path, n: int = 8, size: int = 256) -> Path:
    """A contact sheet of the first ``n`` samples: sRGB GT (if saved), the RAW through bilinear demosaic +
    PTP, the HQ linear through PTP, and the sRGB LQ (if saved), each scaled to ``size`` pixels high.
    ``out_dir`` may be an fsspec URL; ``out_png`` is a local path."""
    import cv2
    import torch

    from .storage import is_url, url_to_fs

    if is_url(out_dir):
        fs, root = url_to_fs(out_dir)
        out = out_dir
        tars = [_UrlName(fs.unstrip_protocol(p)) for p in sorted(fs.glob(f"{root.rstrip('/')}/shard-*.tar"))]
    else:
        out = Path(out_dir)
        tars = sorted(out.glob("shard-*.tar"))
    if not tars:
        raise InputError(out, "no shards", hint="run `rawsynth generate` first")
    rows = []

    def panel(img_u8: np.ndarray | None, label: str) -> np.ndarray:
        if img_u8 is None:
            img_u8 = np.full((size, size, 3), 40, np.uint8)
        else:
            img_u8 = cv2.resize(img_u8, (size * img_u8.shape[1] // img_u8.shape[0], size),
                                interpolation=cv2.INTER_AREA)
        img_u8 = np.ascontiguousarray(img_u8[:, :size])
        cv2.rectangle(img_u8, (0, 0), (size, 18), (0, 0, 0), -1)
        cv2.putText(img_u8, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return img_u8

    def u8(t: torch.Tensor) -> np.ndarray:
        return (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)

    for tar in tars:
        for raw_sample in iter_shard(tar):
            s = decode_sample(raw_sample, name=f"{tar.name}:{raw_sample.get('__key__')}")
            meta = s["meta"]
            isp = ISPParams.from_dict(meta["isp"])
            pattern = Pattern(meta["pattern"])
            sensor = SensorParams.from_dict(meta["sensor"])
            raw = normalize(torch.from_numpy(s["raw_dn"].astype(np.int32))[None, None], sensor)
            developed = process(demosaic_bilinear(raw.clamp_min(0), pattern), isp)
            hq = process(torch.from_numpy(s["hq"]).permute(2, 0, 1)[None], isp)
            gt_label = f"GT {s['key']}" if s["gt"] is not None else f"{s['key']}: GT not saved"
            raw_label = f"RAW {pattern.value} ISO {meta['noise']['iso']:.0f}"
            rows.append(np.concatenate([panel(s["gt"], gt_label),
                                        panel(u8(developed), raw_label),
                                        panel(u8(hq), "HQ linear->PTP"),
                                        panel(s["lq"], "LQ sRGB" if s["lq"] is not None else "LQ: not saved")],
                                       axis=1))
            if len(rows) >= n:
                break
        if len(rows) >= n:
            break
    grid = np.concatenate(rows, axis=0)
    out_png = Path(out_png)
    if not cv2.imwrite(str(out_png), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise InputError(out_png, "unwritable", hint="check the folder exists and is writable")
    return out_png
