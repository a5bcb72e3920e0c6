"""How far the batched tensor JPEGs land from libjpeg, per quality, on real photos.

Run as ``python -m benchmarks.perf.gpu_jpeg [--qualities 10 30 50 75 95] [--crop 256] [--device cpu]``.
Results: ``docs/gpu.md`` ("Which JPEG").

For every photo of scikit-image's ``astronaut``, ``chelsea``, ``coffee``, ``rocket``, ``immunohistochemistry``
and ``hubble_deep_field`` (a ``crop × crop`` top-left crop, odd sizes included by trimming one pixel) and every
quality it encodes and decodes with PIL's libjpeg (4:2:0, the shards' codec; OpenCV writes the same bytes) and
prints the PSNR (8-bit peak) between libjpeg's decoded image and

* ``tensor``: rawsynth's batched tensor JPEG (:func:`rawsynth.degrade.gpu.jpeg_tensor`, one call for all the
  photos at once, each with its quality);
* ``diffjpeg``: basicsr's ``DiffJPEG(differentiable=False)``, the tensor JPEG Real-ESRGAN trains with (with
  each image edge-replicated to a multiple of 16, as libjpeg pads);
* ``source``: the photo itself (the JPEG distortion, for scale).

Columns: median and worst PSNR over the photos, and the share of identical 8-bit values (tensor only).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import warnings

import numpy as np
import torch

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def _photos(crop: int) -> list[np.ndarray]:
    import skimage.data

    out = []
    for k, name in enumerate(PHOTOS):
        a = np.asarray(getattr(skimage.data, name)())
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        out.append(np.ascontiguousarray(a[:crop - (k % 2), :crop - (k % 3)]))  # odd sizes too
    return out


def libjpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """PIL's libjpeg round trip (baseline, 4:2:0: PIL's default)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _ragged(imgs: list[np.ndarray], device) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    sizes = [i.shape[:2] for i in imgs]
    u8 = torch.zeros((len(imgs), 3, max(h for h, _ in sizes), max(w for _, w in sizes)), dtype=torch.uint8)
    for k, i in enumerate(imgs):
        u8[k, :, :i.shape[0], :i.shape[1]] = torch.from_numpy(i).permute(2, 0, 1)
    return u8.to(device), sizes


def tensor_jpeg(imgs: list[np.ndarray], qualities: list[int], device="cpu") -> list[np.ndarray]:
    """rawsynth's tensor JPEG of every image, with its own quality, in one batched call."""
    from rawsynth.degrade.gpu import jpeg_tensor

    u8, sizes = _ragged(imgs, device)
    out = jpeg_tensor(u8, sizes, qualities).cpu()
    return [out[k, :, :h, :w].permute(1, 2, 0).numpy() for k, (h, w) in enumerate(sizes)]


def diff_jpeg(imgs: list[np.ndarray], quality: int, device="cpu") -> list[np.ndarray]:
    """basicsr's DiffJPEG (Real-ESRGAN's training JPEG), per image, edge-replicated to a multiple of 16."""
    from rawsynth.compat.basicsr import DiffJPEG

    jpeger = DiffJPEG(differentiable=False).to(device)
    out = []
    for img in imgs:
        h, w = img.shape[:2]
        x = np.pad(img, ((0, -h % 16), (0, -w % 16), (0, 0)), mode="edge")
        t = torch.from_numpy(x).permute(2, 0, 1)[None].to(device, torch.float32) / 255.0
        with torch.no_grad():
            y = jpeger(t, quality=torch.tensor([float(quality)], device=device))
        y = (y.clamp(0, 1) * 255.0).round().to(torch.uint8)[0, :, :h, :w]
        out.append(y.permute(1, 2, 0).cpu().numpy())
    return out


def table(qualities, crop: int, device="cpu", with_diffjpeg: bool = True) -> list[dict]:
    imgs = _photos(crop)
    rows = []
    for q in qualities:
        ref = [libjpeg(i, q) for i in imgs]
        ours = tensor_jpeg(imgs, [q] * len(imgs), device)
        row = {"quality": q, "tensor": [psnr(a, b) for a, b in zip(ours, ref)],
               "identical": statistics.mean(float(np.mean(a == b)) for a, b in zip(ours, ref)),
               "source": [psnr(a, b) for a, b in zip(imgs, ref)]}
        if with_diffjpeg:
            row["diffjpeg"] = [psnr(a, b) for a, b in zip(diff_jpeg(imgs, q, device), ref)]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.gpu_jpeg", description=__doc__.split("\n\n")[0])
    p.add_argument("--qualities", type=int, nargs="+", default=[10, 30, 50, 75, 95])
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-diffjpeg", action="store_true", help="skip basicsr's DiffJPEG")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = table(a.qualities, a.crop, a.device, not a.no_diffjpeg)
    print(f"PSNR (dB) against PIL's libjpeg 4:2:0, {len(PHOTOS)} photos (skimage.data) at up to {a.crop}², "
          "median / worst")
    print("| quality | tensor JPEG (rawsynth) | identical values | DiffJPEG (basicsr) | source vs libjpeg |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        dj = r.get("diffjpeg")
        f = lambda v: f"{statistics.median(v):.1f} / {min(v):.1f}"  # noqa: E731
        print(f"| {r['quality']} | {f(r['tensor'])} | {100 * r['identical']:.1f} % | {f(dj) if dj else '-'} | "
              f"{f(r['source'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
