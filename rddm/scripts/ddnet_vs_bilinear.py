"""Does a briefly trained DDNet beat the bilinear demosaic? A CPU-sized measurement on scikit-image photos.
See ``docs/training.md``."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

HELD_OUT = ("skimage.data/coffee.png", "skimage.data/motorcycle_right.png")


def psnr(a, b) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def make_shards(out: Path, crop: int, train_crops: int, test_crops: int) -> tuple[Path, Path]:
    """Training and held-out ``ddnet``-mode shards from the bundled photos."""
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig
    from rawsynth.sources import bundled_sources

    src = bundled_sources()
    train = [s for s in src if s.name not in HELD_OUT]
    test = [s for s in src if s.name in HELD_OUT]
    tr, te = out / "train_shards", out / "heldout_shards"
    for srcs, folder, n, seed in ((train, tr, train_crops, 0), (test, te, test_crops, 1)):
        if not (folder / "manifest.json").exists():
            generate(srcs, folder, SynthConfig(mode="ddnet", crop=crop, crops_per_image=n, save_srgb=False),
                     seed=seed, shard_size=8, workers=1, progress=False)
    return tr, te


def evaluate(model_dir: Path | None, heldout: Path) -> dict:
    """Mean PSNR (linear and sRGB) of DDNet and of the bilinear demosaic over the held-out samples."""
    import torch

    from rawsynth.data import make_loader
    from rawsynth.mns import demosaic_bilinear

    from rddm.losses import isp_from_meta, to_srgb
    from rddm.models.ddnet import DDNet
    from rddm.train.core import resolve_shards

    net = DDNet.from_pretrained(model_dir).eval() if model_dir is not None else None
    rows = []
    loader = make_loader(resolve_shards([str(heldout)]), 1, 0, flips=False, crop=None, shuffle=0)
    with torch.no_grad():
        for batch in loader:
            raw, hq, pats = batch["raw"], batch["hq"], batch["pattern"]
            isp = isp_from_meta(batch["meta"])
            bil = demosaic_bilinear(raw, pats).clamp(0, 1)
            row = {"key": batch["key"][0], "iso": batch["meta"][0]["noise"]["iso"],
                   "bilinear_linear": psnr(bil, hq), "bilinear_srgb": psnr(to_srgb(bil, isp), to_srgb(hq, isp))}
            if net is not None:
                pred = net(raw, pats).clamp(0, 1)
                row.update(ddnet_linear=psnr(pred, hq), ddnet_srgb=psnr(to_srgb(pred, isp), to_srgb(hq, isp)))
            rows.append(row)
    keys = [k for k in rows[0] if k not in ("key", "iso")]
    return {"samples": len(rows), "mean": {k: sum(r[k] for r in rows) / len(rows) for k in keys}, "per_sample": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="work folder (shards, training run, results)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--train-crop", type=int, default=96, help="training crop")
    ap.add_argument("--sample-size", type=int, default=256, help="size of the generated samples")
    ap.add_argument("--train-crops", type=int, default=24, help="samples per training photo")
    ap.add_argument("--test-crops", type=int, default=8, help="samples per held-out photo")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--channels", default="32,64,128")
    args = ap.parse_args(argv)

    from rddm.config import DDNetTrainConfig, config_from_dict
    from rddm.train.ddnet import train_ddnet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr, te = make_shards(out, args.sample_size, args.train_crops, args.test_crops)
    cfg = config_from_dict(DDNetTrainConfig, {
        "max_steps": args.steps, "batch_size": args.batch_size, "log_every": 50, "save_every": args.steps,
        "keep_checkpoints": 1, "tensorboard": False,
        "data": {"shards": [str(tr)], "crop": args.train_crop, "num_workers": 1, "shuffle": 64},
        "optim": {"lr": args.lr, "lr_scheduler": "cosine", "warmup_steps": min(50, args.steps // 10)},
        "model": {"block_out_channels": [int(c) for c in args.channels.split(",")]}})
    run = out / "run"
    t0 = time.time()
    summary = train_ddnet(cfg, run, resume="latest" if (run / "checkpoints").exists() else None, device="cpu",
                          progress=False)
    seconds = time.time() - t0
    result = evaluate(run / "ddnet", te)
    result.update(steps=args.steps, batch_size=args.batch_size, train_crop=args.train_crop, train_seconds=seconds,
                  held_out_photos=list(HELD_OUT), peak_memory=summary.get("peak_memory"),
                  model=cfg.model.__dict__)
    (out / "ddnet_vs_bilinear.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "per_sample"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
