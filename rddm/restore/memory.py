"""Measure ``rddm restore``'s peak memory and time on one image at real model sizes (random weights: no download).
See ``docs/rddm.md``."""

from __future__ import annotations

import argparse
import json
import time
from rawsynth.device import DEVICE_HELP, device_arg

def build_model(arch: str):
    """A random-weight :class:`~rddm.models.rddm.RDDM` of ``arch`` (``sd21`` or ``tiny``), float32, eval mode."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from ..models.architectures import SD21_UNET, SD21_VAE, TINY_UNET, TINY_VAE
    from ..models.rddm import RDDM, RDDMConfig
    from ..models.rvae import RVAE

    unet_cfg, vae_cfg = {"sd21": (SD21_UNET, SD21_VAE), "tiny": (TINY_UNET, TINY_VAE)}[arch]
    torch.manual_seed(0)
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    return RDDM(RVAE(**vae_cfg), UNet2DConditionModel(**unet_cfg), sched.alphas_cumprod, RDDMConfig()).eval()


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(h or w), int(w)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["sd21", "tiny"], default="sd21")
    ap.add_argument("--size", type=_size, default=(4000, 6000), help="WIDTHxHEIGHT of the mosaic (default 6000x4000)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int)
    ap.add_argument("--tile-batch", type=int, default=1)
    ap.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    args = ap.parse_args(argv)

    import resource

    import torch

    from .restorer import Restorer, reflect_pad
    from .run import resolve_device, resolve_dtype
    from .tiling import tile_starts

    dev = resolve_device(args.device)
    dt = resolve_dtype(args.dtype, dev)
    model = build_model(args.arch).to(device=dev, dtype=dt)
    restorer = Restorer(model, tile=args.tile, overlap=args.overlap, tile_batch=args.tile_batch, dtype=dt)
    h, w = args.size
    raw = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
    emb = torch.zeros(1, 77, model.unet.config.cross_attention_dim, device=dev, dtype=dt)
    f = restorer.factor
    restorer(raw[..., :restorer.pixel_multiple * 2, :restorer.pixel_multiple * 2], "RGGB", emb)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = restorer(raw, "RGGB", emb)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    ph, pw = reflect_pad(raw[:, :, :1, :1].expand(1, 1, h, w), restorer.pixel_multiple).shape[-2:]
    t = restorer.tiling
    tiles = (len(tile_starts(ph // f, t.tile, t.overlap, t.align)) * len(tile_starts(pw // f, t.tile, t.overlap,
                                                                                        t.align))) if t else 1
    result = {"arch": args.arch, "device": str(dev), "dtype": str(dt).replace("torch.", ""), "size": [h, w],
              "padded": [ph, pw], "latent": [ph // f, pw // f], "tile_px": t.tile * f if t else None,
              "overlap_px": t.overlap * f if t else None, "tiles": tiles, "tile_batch": args.tile_batch,
              "seconds": round(seconds, 3), "finite": bool(torch.isfinite(out).all()),
              "parameters": sum(p.numel() for p in model.parameters())}
    if dev.type == "cuda":
        result["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        result["max_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
