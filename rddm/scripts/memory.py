"""Measure a training step's peak memory and time at real model sizes (random weights: no download needed).
See ``docs/rddm.md``."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

from ..models.architectures import SD21_VAE, TINY_VAE
from rawsynth.device import device_arg


def _ddnet_step(args, env, raw, hq) -> tuple[Callable[[int], dict], dict]:
    import torch

    from ..models.ddnet import DDNet
    from ..train import core

    model = DDNet().to(env.device)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = sum(p.numel() for p in model.parameters())

    def step(_: int) -> dict:
        with core.autocast(env, args.mixed_precision):
            loss = torch.nn.functional.mse_loss(model(raw, "RGGB").float(), hq)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss)}

    return step, {"trainable_params": params, "total_params": params}


def _rvae_step(args, env, raw, hq, isp) -> tuple[Callable[[int], dict], dict]:
    import torch
    from diffusers import AutoencoderKL

    from ..losses import DualDomainLoss, adaptive_gan_weight, generator_gan_loss, hinge_d_loss
    from ..lpips import LPIPS
    from ..models.discriminator import PatchDiscriminator
    from ..models.rvae import RVAE
    from ..train import core

    dev = env.device
    rvae = RVAE.from_vae(AutoencoderKL(**(SD21_VAE if args.arch == "sd21" else TINY_VAE))).to(dev)
    disc = PatchDiscriminator().to(dev)
    lp = None if args.no_lpips else LPIPS("vgg").to(dev)
    rec_loss = DualDomainLoss(l1_linear=1, l1_srgb=1, lpips=0 if lp is None else 1, lpips_model=lp)
    if args.gradient_checkpointing:
        rvae.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(rvae.parameters(), lr=1e-5, betas=(0.5, 0.9))
    d_opt = torch.optim.AdamW(disc.parameters(), lr=1e-5, betas=(0.5, 0.9))
    params = sum(p.numel() for p in rvae.parameters())

    def step(_: int) -> dict:
        with core.autocast(env, args.mixed_precision):
            rec, post = rvae.reconstruct(hq)
            out = rec_loss(rec, hq, isp)
            disc.requires_grad_(False)
            g = generator_gan_loss(disc(2 * rec - 1))
            lam = adaptive_gan_weight(out.total, g, rvae.last_decoder_layer())
            loss = out.total + 1e-6 * post.kl().mean() + 0.5 * lam * g
        loss.backward()
        disc.requires_grad_(True)
        with core.autocast(env, args.mixed_precision):
            logits = disc(torch.cat([2 * hq - 1, 2 * rec.detach() - 1])).float()
            d_loss = hinge_d_loss(*logits.chunk(2))
        d_loss.backward()
        opt.step()
        d_opt.step()
        opt.zero_grad(set_to_none=True)
        d_opt.zero_grad(set_to_none=True)
        return {"loss": float(loss), "d_loss": float(d_loss)}

    return step, {"trainable_params": params, "total_params": params + sum(p.numel() for p in disc.parameters())}


def write_random_lpips(folder, net: str = "vgg", seed: int = 0) -> str:
    """Write random LPIPS weights under the file names :meth:`rddm.lpips.LPIPS.from_folder` reads (torchvision
    backbone keys ``features.N.*``, pyiqa's ``linK.model.1.weight``), so the training code loads them through
    its real path; returns the folder."""
    from pathlib import Path

    import torch

    from ..lpips import BACKBONE_FILES, LIN_FILES, LPIPS

    torch.manual_seed(seed)
    model = LPIPS(net)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()}, root / BACKBONE_FILES[net])
    torch.save({f"lin{k.split('.')[0]}.model.1.weight": v for k, v in model.lins.state_dict().items()},
               root / LIN_FILES[net][0])
    return str(root)


class _FixedPrompt:
    """Stands in for RAW prompt extraction and the text encoder: one random ``(1, L, D)`` embedding for every
    sample (the text encoder runs without gradient once per step; its ~340 M parameters are not counted here)."""

    def __init__(self, embeds):
        self.value = embeds

    def embeds(self, raw, patterns, isp):
        return self.value.expand(raw.shape[0], -1, -1)

    def encode(self, texts):
        return self.value.expand(len(texts), -1, -1)


def _rddm_step(args, env, raw, hq, tmp: str) -> tuple[Callable[[int], dict], dict]:
    import torch

    from rawsynth.isp import fixed_isp_params
    from rawsynth.mns import Pattern

    from ..config import RDDMLossConfig, RDDMTrainConfig
    from ..restore.memory import build_model
    from ..train import rddm as tr

    dev, b = env.device, raw.shape[0]
    loss_cfg = RDDMLossConfig(vsd=not args.no_vsd, rgb_lpips=0.0 if args.no_lpips else RDDMLossConfig.rgb_lpips,
                              lpips_weights=None if args.no_lpips else write_random_lpips(tmp))
    cfg = RDDMTrainConfig(batch_size=b, mixed_precision=args.mixed_precision,
                          gradient_checkpointing=args.gradient_checkpointing, loss=loss_cfg)
    rec_loss = tr.build_rec_loss(cfg).to(dev)
    rddm = build_model(args.arch)  # RDDM(RVAE, UNet, ᾱ, RDDMConfig()): CMB LoRA rank 4, the four patterns
    if args.size % rddm.size_multiple:
        raise SystemExit(f"--size must be a multiple of {rddm.size_multiple} for --arch {args.arch}")
    vsd = tr.build_vsd(cfg, rddm)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 77, rddm.unet.config.cross_attention_dim, generator=g).to(dev)
    neg = torch.randn(1, 77, rddm.unet.config.cross_attention_dim, generator=g).to(dev)
    prompts = tr.Prompts(_FixedPrompt(emb), _FixedPrompt(neg), "")
    trainer = tr.Trainer(cfg, env, rddm, vsd, rec_loss, prompts)  # what `rddm train` steps, one process
    pats = list(Pattern)
    batch = {"raw": raw, "hq": hq, "pattern": [pats[i % len(pats)].value for i in range(b)],
             "meta": [{"key": f"sample{i}", "isp": fixed_isp_params().to_dict()} for i in range(b)]}

    def step(i: int) -> dict:
        sums = trainer.step(i, lambda: batch)
        return {k: float(v) for k, v in sums.items() if k not in ("lr", "reg_lr", "grad_norm")}

    total = sum(p.numel() for p in rddm.parameters()) + sum(p.numel() for p in rec_loss.parameters())
    return step, {"trainable_params": sum(p.numel() for p in trainer.params), "vsd_trainable_params":
                  sum(p.numel() for p in trainer.reg_params), "total_params": total, "loss_terms": cfg.loss.terms(),
                  "lpips": not args.no_lpips, "vsd": vsd is not None, "arch": args.arch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["rvae", "ddnet", "rddm"], default="rvae")
    ap.add_argument("--arch", choices=["sd21", "tiny"], default="sd21",
                    help="rvae/rddm: SD-2.1's architectures (default) or the tests' tiny ones")
    ap.add_argument("--size", type=int, default=256, help="square crop size")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2, help="measured steps (after one warm-up step)")
    ap.add_argument("--device", type=device_arg, default="cpu", help="auto, cpu (default), cuda or cuda:N")
    ap.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--no-lpips", action="store_true", help="RVAE/RDDM: without the LPIPS-VGG term")
    ap.add_argument("--no-vsd", action="store_true", help="RDDM: without the VSD regulariser")
    args = ap.parse_args(argv)

    import torch

    from rawsynth.isp import fixed_isp_params

    from ..train import core

    env = core.setup_distributed(args.device)
    dev = env.device
    base = core.peak_memory(env)
    b, s = args.batch_size, args.size
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(b, 1, s, s, generator=g).to(dev)
    hq = torch.rand(b, 3, s, s, generator=g).to(dev)
    with tempfile.TemporaryDirectory(prefix="rddm-memory-") as tmp:
        if args.stage == "ddnet":
            step, info = _ddnet_step(args, env, raw, hq)
        elif args.stage == "rvae":
            step, info = _rvae_step(args, env, raw, hq, [fixed_isp_params()] * b)
        else:
            step, info = _rddm_step(args, env, raw, hq, tmp)
        built = core.peak_memory(env)
        values = step(0)  # warm-up (allocator, optimizer state)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.time()
        for i in range(args.steps):
            values = step(i + 1)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = (time.time() - t0) / max(args.steps, 1)
    result = {"stage": args.stage, "size": s, "batch_size": b, "device": str(dev),
              "mixed_precision": args.mixed_precision, "gradient_checkpointing": args.gradient_checkpointing,
              "lpips": args.stage != "ddnet" and not args.no_lpips, **info,
              "seconds_per_step": round(seconds, 3), "peak_memory": core.peak_memory(env),
              "memory_before_models": base, "memory_after_models": built,
              "last_losses": {k: round(v, 6) for k, v in values.items()},
              "torch": torch.__version__}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
