"""Manual check: our DNGs rendered by every RAW developer installed here, against our own development.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
BORDER = 6
MAX_SHIFT = 8
RT_PROFILE = """[Version]
AppVersion=5.9
Version=346

[Exposure]
Auto=false
Clip=0
Compensation=0
Brightness=0
Contrast=0
Saturation=0
Black=0
HighlightCompr=0
ShadowCompr=0
HistogramMatching=false
CurveFromHistogramMatching=false
ClampOOG=false
CurveMode=Standard
CurveMode2=Standard
Curve=0;
Curve2=0;

[White Balance]
Enabled=true
Setting=Camera

[RAW]
CA=false
CAAutoIterations=0
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.dng_readers", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (sheet.png, results.json, the DNGs)")
    p.add_argument("--photos", type=int, default=3, help=f"how many of {', '.join(PHOTOS)} (default 3)")
    p.add_argument("--size", type=int, default=512, help="centre crop side of each photo (even, default 512)")
    p.add_argument("--readers", default="LibRaw,darktable,RawTherapee",
                   help="comma-separated readers to try (default: all; those not installed are skipped)")
    a = p.parse_args(argv)
    a.readers = [r.strip() for r in a.readers.split(",") if r.strip()]
    if not a.readers or any(r not in READERS for r in a.readers):
        p.error(f"--readers must name some of {', '.join(READERS)}")
    if not 1 <= a.photos <= len(PHOTOS) or a.size < 64 or a.size % 2:
        p.error(f"--photos must be 1..{len(PHOTOS)} and --size an even number >= 64")
    return a


def _photo(name: str, size: int) -> torch.Tensor:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = img.shape[:2]
    s = min(size, h - h % 2, w - w % 2)
    y, x = (h - s) // 2, (w - s) // 2
    img = img[y:y + s, x:x + s, :3].astype(np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _finish(lin: np.ndarray) -> np.ndarray:
    from rawsynth.isp.ptp import gamma, tone

    return tone(gamma(torch.from_numpy(np.clip(lin, 0.0, 1.0)))).numpy()


def _libraw(path: Path, tmp: Path) -> np.ndarray:
    import rawpy

    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(1, 1), output_bps=16,
                              output_color=rawpy.ColorSpace.sRGB, demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR,
                              highlight_mode=rawpy.HighlightMode.Clip, adjust_maximum_thr=0.0)
    return out.astype(np.float64) / 65535.0


def _tiff_linear(path: Path) -> np.ndarray:
    import tifffile

    return _srgb_to_linear(tifffile.imread(path)[..., :3].astype(np.float64) / 65535.0)


def _darktable(path: Path, tmp: Path) -> np.ndarray:
    out = tmp / f"{path.stem}.dt.tif"
    subprocess.run(["darktable-cli", str(path), str(out), "--core", "--library", ":memory:", "--configdir",
                    str(tmp / "dtconf"), "--conf", "plugins/imageio/format/tiff/bpp=16", "--conf",
                    "plugins/darkroom/workflow=none"], check=True, capture_output=True, timeout=300)
    return _tiff_linear(out)


def _rawtherapee(path: Path, tmp: Path) -> np.ndarray:
    profile = tmp / "neutral.pp3"
    profile.write_text(RT_PROFILE)
    out = tmp / f"{path.stem}.rt.tif"
    subprocess.run(["rawtherapee-cli", "-o", str(out), "-t", "-b16", "-Y", "-p", str(profile), "-c", str(path)],
                   check=True, capture_output=True, timeout=300)
    return _tiff_linear(out)


READERS = {"LibRaw": (None, _libraw), "darktable": ("darktable-cli", _darktable),
           "RawTherapee": ("rawtherapee-cli", _rawtherapee)}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _blocks(x: np.ndarray, k: int = 8) -> np.ndarray:
    h, w = x.shape[0] // k * k, x.shape[1] // k * k
    return x[:h, :w].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))


def compare(ours_lin: np.ndarray, ours: np.ndarray, theirs_lin: np.ndarray) -> tuple[float, float, tuple, np.ndarray]:
    """``(psnr, gain, (dy, dx), their finished image aligned to ours)``: the shift of ``theirs`` inside
    ``ours`` and the linear gain that fit best."""
    h, w = theirs_lin.shape[:2]
    best = None
    for dy in range(0, min(MAX_SHIFT, ours.shape[0] - h) + 1):
        for dx in range(0, min(MAX_SHIFT, ours.shape[1] - w) + 1):
            ref_lin = ours_lin[dy:dy + h, dx:dx + w][BORDER:-BORDER, BORDER:-BORDER]
            t = theirs_lin[BORDER:-BORDER, BORDER:-BORDER]
            ok = (ref_lin < 0.95) & (t < 0.95)  # fit the gain away from clipping
            gain = float((t[ok] * ref_lin[ok]).sum() / max((t[ok] ** 2).sum(), 1e-12))
            fin = _finish(t * gain)
            p = _psnr(fin, ours[dy:dy + h, dx:dx + w][BORDER:-BORDER, BORDER:-BORDER])
            if best is None or p > best[0]:
                best = (p, gain, (dy, dx), fin)
    return best


def run(args) -> dict:
    from rawsynth.io import write_dng
    from rawsynth.isp import fixed_isp_params, process, sample_isp_params, unprocess
    from rawsynth.mns import Pattern, SensorParams, demosaic_bilinear, mosaic, normalize, quantize

    sensor = SensorParams(12, 256, 4095)
    isps = {"fixed": fixed_isp_params(), "sampled": sample_isp_params(np.random.default_rng(1))}
    readers = {k: fn for k, (exe, fn) in READERS.items() if k in args.readers and (exe is None or shutil.which(exe))}
    missing = [k for k in args.readers if k not in readers]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for photo in PHOTOS[:args.photos]:
            srgb = _photo(photo, args.size)
            for isp_name, isp in isps.items():
                lin = unprocess(srgb, isp)
                for pattern in Pattern:
                    m = quantize(mosaic(lin, pattern), sensor)
                    path = args.out / f"{photo}-{pattern.value}-{isp_name}.dng"
                    write_dng(path, m[0, 0].numpy(), pattern, sensor, isp, iso=800)
                    cam = demosaic_bilinear(normalize(m, sensor), pattern).double()
                    ours = process(cam, isp)[0].permute(1, 2, 0).numpy()
                    wb = torch.tensor(isp.wb_gains, dtype=torch.float64)[None, :, None, None]
                    ccm = torch.tensor(isp.cam2rgb, dtype=torch.float64)
                    ours_lin = torch.einsum("ij,bjhw->bihw", ccm, (cam * wb).clamp(0, 1)).clamp(0, 1)
                    ours_lin = ours_lin[0].permute(1, 2, 0).numpy()
                    row, entry = [ours], {"file": path.name, "rgb_gain": isp.rgb_gain}
                    for name, fn in readers.items():
                        theirs = fn(path, tmp)
                        p, gain, shift, fin = compare(ours_lin, ours, theirs)
                        h, w = fin.shape[:2]
                        sl = np.s_[shift[0] + BORDER:shift[0] + BORDER + h, shift[1] + BORDER:shift[1] + BORDER + w]
                        ref_lin, t_lin = ours_lin[sl], theirs[BORDER:-BORDER, BORDER:-BORDER] * gain
                        ok = (ref_lin < 0.9) & (t_lin < 0.9) & (ref_lin > 0.02)
                        ratios = [float(t_lin[..., c][ok[..., c]].sum() / ref_lin[..., c][ok[..., c]].sum())
                                  for c in range(3)]
                        p8 = _psnr(_blocks(fin), _blocks(ours[sl]))
                        entry[name] = {"psnr": round(p, 2), "psnr_8x8": round(p8, 2),
                                       "cast": round(max(ratios) / min(ratios) - 1, 4), "gain": round(gain, 4),
                                       "shift": list(shift)}
                        full = np.zeros_like(ours)
                        full[shift[0] + BORDER:shift[0] + BORDER + fin.shape[0],
                             shift[1] + BORDER:shift[1] + BORDER + fin.shape[1]] = fin
                        row.append(full)
                    results.append(entry)
                    rows.append(np.concatenate(row, axis=1))
                    print(json.dumps(entry), flush=True)
    _sheet(rows, args.out / "sheet.png")
    summary = {name: {"min": min(r[name]["psnr"] for r in results),
                      "median": statistics.median(r[name]["psnr"] for r in results),
                      "max": max(r[name]["psnr"] for r in results),
                      "min_8x8": min(r[name]["psnr_8x8"] for r in results),
                      "median_8x8": statistics.median(r[name]["psnr_8x8"] for r in results),
                      "max_cast": max(r[name]["cast"] for r in results),
                      "median_gain_over_rgb_gain": statistics.median(r[name]["gain"] / r["rgb_gain"] for r in results)}
               for name in readers}
    out = {"files": results, "summary": summary, "missing": missing, "columns": ["ours", *readers]}
    (args.out / "results.json").write_text(json.dumps(out, indent=1))
    return out


def _sheet(rows: list[np.ndarray], path: Path, thumb: int = 192) -> None:
    from PIL import Image

    ims = []
    for r in rows:
        h, w = r.shape[:2]
        im = Image.fromarray(np.round(np.clip(r, 0, 1) * 255).astype(np.uint8))
        ims.append(im.resize((thumb * w // h, thumb), Image.BILINEAR))
    sheet = Image.new("RGB", (max(i.width for i in ims), thumb * len(ims)))
    for k, im in enumerate(ims):
        sheet.paste(im, (0, k * thumb))
    sheet.save(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = run(args)
    print(f"\n{len(out['files'])} DNGs; columns of {args.out / 'sheet.png'}: {', '.join(out['columns'])}")
    if out["missing"]:
        print(f"not installed (skipped): {', '.join(out['missing'])}")
    print("\n| reader | PSNR min / median / max (dB) | 8x8 means: min / median (dB) | largest cast | "
          "fitted gain / rgb_gain (median) |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in out["summary"].items():
        print(f"| {name} | {s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f} | {s['min_8x8']:.1f} / "
              f"{s['median_8x8']:.1f} | {100 * s['max_cast']:.2f} % | {s['median_gain_over_rgb_gain']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
