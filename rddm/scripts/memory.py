"""Measure a training step's peak memory and time at real model sizes (random weights: no download needed).

The RVAE stage is measured with the SD-2.1 VAE architecture (4 blocks, 128–512 channels, 8× down), LPIPS-VGG
and the patch discriminator, GAN and adaptive weight active: the heaviest step of ``rddm train-rvae``. DDNet
with its default config. Weights are random: memory and time do not depend on their values.

    python -m rddm.scripts.memory --stage rvae --size 512 --batch-size 4 --device cuda --mixed-precision bf16
    python -m rddm.scripts.memory --stage ddnet --size 128 --batch-size 16 --device cpu

Prints one JSON object: peak memory (CUDA ``max_memory_allocated``/``reserved``, or the process's peak RSS
on the CPU, with the RSS before the models were built), seconds per step (after a warm-up step), parameters.
"""

from __future__ import annotations

import argparse
import json
import time

from ..models.architectures import SD21_VAE

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["rvae", "ddnet"], default="rvae")
    ap.add_argument("--size", type=int, default=256, help="square crop size")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2, help="measured steps (after one warm-up step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--no-lpips", action="store_true", help="RVAE: without the LPIPS-VGG term")
    args = ap.parse_args(argv)

    import torch

    from rawsynth.isp import fixed_isp_params

    from rddm.train import core

    env = core.setup_distributed(args.device)
    dev = env.device
    base = core.peak_memory(env)
    b, s = args.batch_size, args.size
    raw = torch.rand(b, 1, s, s, device=dev)
    hq = torch.rand(b, 3, s, s, device=dev)
    isp = [fixed_isp_params()] * b
    if args.stage == "ddnet":
        from rddm.models.ddnet import DDNet

        model = DDNet().to(dev)
        if args.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        params = sum(p.numel() for p in model.parameters())

        def step():
            with core.autocast(env, args.mixed_precision):
                loss = torch.nn.functional.mse_loss(model(raw, "RGGB").float(), hq)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        from diffusers import AutoencoderKL

        from rddm.losses import DualDomainLoss, adaptive_gan_weight, generator_gan_loss, hinge_d_loss
        from rddm.lpips import LPIPS
        from rddm.models.discriminator import PatchDiscriminator
        from rddm.models.rvae import RVAE

        rvae = RVAE.from_vae(AutoencoderKL(**SD21_VAE)).to(dev)
        disc = PatchDiscriminator().to(dev)
        lp = None if args.no_lpips else LPIPS("vgg").to(dev)
        rec_loss = DualDomainLoss(l1_linear=1, l1_srgb=1, lpips=0 if lp is None else 1, lpips_model=lp)
        if args.gradient_checkpointing:
            rvae.enable_gradient_checkpointing()
        opt = torch.optim.AdamW(rvae.parameters(), lr=1e-5, betas=(0.5, 0.9))
        d_opt = torch.optim.AdamW(disc.parameters(), lr=1e-5, betas=(0.5, 0.9))
        params = sum(p.numel() for p in rvae.parameters())

        def step():
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

    step()  # warm-up (allocator, optimizer state)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.time()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    result = {"stage": args.stage, "size": s, "batch_size": b, "device": str(dev),
              "mixed_precision": args.mixed_precision, "gradient_checkpointing": args.gradient_checkpointing,
              "lpips": args.stage == "rvae" and not args.no_lpips, "trainable_params": params,
              "seconds_per_step": round((time.time() - t0) / args.steps, 3), "peak_memory": core.peak_memory(env),
              "memory_before_models": base, "torch": torch.__version__}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
