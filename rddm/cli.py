"""The ``rddm`` command: ``train-ddnet``, ``train-rvae``, ``calibrate-latent-scale``, ``train``, ``restore``,
``config``. See ``docs/training.md``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rawsynth._version import __version__
from rawsynth._cli import run_cli

from .errors import ConfigError
from rawsynth.device import DEVICE_HELP, device_arg

__all__ = ["main", "build_parser", "default_config_path", "STAGES"]

#: ``rddm config`` stage → (bundled YAML, config class name in :mod:`rddm.config`).
STAGES = {"ddnet": ("ddnet.yaml", "DDNetTrainConfig"), "rvae": ("rvae.yaml", "RVAETrainConfig"),
          "calibrate": ("calibrate.yaml", "CalibrateConfig"), "rddm": ("rddm.yaml", "RDDMTrainConfig")}


def default_config_path(stage: str) -> Path:
    """The bundled, commented default config of a stage (``rddm/configs/*.yaml``)."""
    return Path(__file__).parent / "configs" / STAGES[stage][0]


def _config_class(stage: str):
    from . import config

    return getattr(config, STAGES[stage][1])


def _load(args: argparse.Namespace, stage: str, overrides: dict):
    from .config import load_config

    path = args.config
    if path is None and getattr(args, "resume", None) is not None and (Path(args.out) / "config.yaml").is_file():
        path = Path(args.out) / "config.yaml"  # resuming without --config: the run's own config
    return load_config(_config_class(stage), path, overrides)


def _resume_arg(args) -> str | None:
    return None if args.resume is None else args.resume


def _abs(path: str | None) -> str | None:
    """Existing local paths become absolute (the saved config then works from any folder); others stay."""
    if path is None or "://" in path or "{" in path or not Path(path).exists():
        return path
    return str(Path(path).resolve())


def _shards(args) -> list[str] | None:
    return [_abs(s) for s in args.shards] if args.shards else None


def _common_overrides(args) -> dict:
    return {"data.shards": _shards(args), "mixed_precision": args.mixed_precision, "max_steps": args.max_steps}


def _cmd_train_ddnet(args: argparse.Namespace) -> int:
    cfg = _load(args, "ddnet", {**_common_overrides(args), "init": _abs(args.init)})
    from .train.ddnet import train_ddnet

    summary = train_ddnet(cfg, args.out, resume=_resume_arg(args), device=args.device, progress=not args.no_progress)
    if summary.get("step") is not None:
        print(f"rddm train-ddnet: {summary['step']} steps in {summary['seconds']} s -> {Path(args.out) / 'ddnet'}")
    return 0


def _cmd_train_rvae(args: argparse.Namespace) -> int:
    cfg = _load(args, "rvae", {**_common_overrides(args), "model.sd_model": _abs(args.sd_model),
                               "model.init": _abs(args.init), "loss.lpips_weights": _abs(args.lpips_weights)})
    from .train.rvae import train_rvae

    summary = train_rvae(cfg, args.out, resume=_resume_arg(args), device=args.device, progress=not args.no_progress)
    if summary.get("step") is not None:
        print(f"rddm train-rvae: {summary['step']} steps in {summary['seconds']} s -> {Path(args.out) / 'rvae'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.prompt is not None and args.prompt_extractor is not None:
        raise ConfigError("--prompt and --prompt-extractor exclude each other",
                          fix='give one: --prompt "TEXT" is the same as --prompt-extractor \'fixed:"TEXT"\'')
    extractor = 'fixed:"' + args.prompt + '"' if args.prompt is not None else args.prompt_extractor
    cfg = _load(args, "rddm", {**_common_overrides(args), "model.sd_model": _abs(args.sd_model),
                               "model.rvae": _abs(args.rvae), "model.init": _abs(args.init),
                               "loss.lpips_weights": _abs(args.lpips_weights), "prompt.extractor": extractor,
                               "prompt.ddnet": _abs(args.ddnet)})
    from .train.rddm import train_rddm

    summary = train_rddm(cfg, args.out, resume=_resume_arg(args), device=args.device, progress=not args.no_progress)
    if summary.get("step") is not None:
        print(f"rddm train: {summary['step']} steps in {summary['seconds']} s -> {Path(args.out) / 'rddm'}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    cfg = _load(args, "calibrate", {"data.shards": _shards(args),
                                    "num_samples": args.num_samples, "mixed_precision": args.mixed_precision})
    from .train.calibrate import calibrate_latent_scale

    r = calibrate_latent_scale(args.rvae, cfg, args.out, device=args.device, progress=not args.no_progress)
    if "rvae" in r:
        print(f"rddm calibrate-latent-scale: sigma={r['sigma']:.6g} mean={r['mean']:.6g} over {r['num_samples']} "
              f"samples -> scaling_factor={r['scaling_factor']:.6g} in {Path(r['rvae']) / 'config.json'}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .restore.run import RestoreOptions, RestorePipeline, restore_files

    options = RestoreOptions(bits=args.bits, save_linear=args.save_linear, linear_format=args.linear_format,
                             overwrite=args.overwrite, highlights=args.highlights)

    def load():
        return RestorePipeline.load(args.model, sd_model=_abs(args.sd_model), rvae_model=_abs(args.rvae),
                                    prompt=args.prompt, prompt_extractor=args.prompt_extractor, ddnet=_abs(args.ddnet),
                                    device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                                    tile_batch=args.tile_batch, norm_stats=args.norm_stats,
                                    norm_stats_size=args.norm_stats_size)

    from .models.rddm import RDDM

    RDDM.read_config(args.model)  # a wrong --model fails now, even when every output exists already
    report = restore_files(args.inputs, args.out, load, options, progress=not args.no_progress,
                           log=lambda msg: print(f"rddm restore: {msg}", file=sys.stderr))
    print(f"rddm restore: {report.line()}")
    return 0 if report.ok else 1


def _cmd_config(args: argparse.Namespace) -> int:
    print(default_config_path(args.stage).read_text(), end="")
    return 0


def _add_run_flags(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--config", help=f"YAML config (`rddm config {stage}` prints the defaults)")
    p.add_argument("--out", required=True, help="output folder: checkpoints, final model, logs")
    p.add_argument("--resume", nargs="?", const="latest", metavar="CKPT",
                   help="continue the run in --out from its newest checkpoint (or from CKPT, a "
                        "checkpoints/step-NNNNNN folder); without --config the run's own config.yaml is used")
    p.add_argument("--shards", nargs="+", metavar="SHARDS",
                   help="training shards: `rawsynth generate` output folders, shard files or brace patterns "
                        "(replaces data.shards)")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="autocast precision (replaces "
                                                                             "mixed_precision)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (replaces max_steps)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rddm", description="Train RDDM's networks on rawsynth shards and restore "
                                                               "RAW images with them.")
    parser.add_argument("--version", action="version", version=f"rddm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train-ddnet", help="train DDNet (joint denoising + demosaicing) with L2 on ddnet-mode shards")
    _add_run_flags(p, "ddnet")
    p.add_argument("--init", help="a DDNet folder to start from (replaces init)")
    p.set_defaults(func=_cmd_train_ddnet)

    p = sub.add_parser("train-rvae", help="train the RVAE's encoder and decoder on linear images (paper Eq. 5)")
    _add_run_flags(p, "rvae")
    p.add_argument("--sd-model", metavar="DIR", help="local Stable Diffusion 2.1 diffusers folder (its vae/ is read) "
                                                     "or a VAE folder (replaces model.sd_model)")
    p.add_argument("--init", help="an RVAE folder to continue from (replaces model.init)")
    p.add_argument("--lpips-weights", metavar="DIR", help="folder with the LPIPS weight files "
                                                          "(replaces loss.lpips_weights)")
    p.set_defaults(func=_cmd_train_rvae)

    p = sub.add_parser("train", help="train the one-step RAW diffusion restorer's LoRA groups (paper Eq. 6)")
    _add_run_flags(p, "rddm")
    p.add_argument("--sd-model", metavar="DIR", help="local Stable Diffusion 2.1 diffusers folder (UNet, scheduler, "
                                                     "text encoder; replaces model.sd_model)")
    p.add_argument("--rvae", metavar="DIR", help="the RVAE of `rddm train-rvae` (OUT/rvae; replaces model.rvae)")
    p.add_argument("--init", help="an RDDM folder whose LoRA groups to start from (replaces model.init)")
    p.add_argument("--lpips-weights", metavar="DIR", help="folder with the LPIPS weight files "
                                                          "(replaces loss.lpips_weights)")
    p.add_argument("--prompt", metavar="TEXT", help="a fixed prompt for every sample (replaces prompt.extractor "
                                                    "with fixed:\"TEXT\")")
    p.add_argument("--prompt-extractor", metavar="SPEC", help='prompt extractor: none, \'fixed:"a photo"\', '
                                                              "tagger:PATH or python:mod:Class[:PATH] (replaces "
                                                              "prompt.extractor)")
    p.add_argument("--ddnet", metavar="DIR", help="DDNet folder for RAW prompt extraction (replaces prompt.ddnet)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("calibrate-latent-scale", help="latent scale factor of paper Eq. 4 into the RVAE's config")
    p.add_argument("--rvae", required=True, metavar="DIR", help="the RVAE folder (OUT/rvae of train-rvae, or OUT)")
    p.add_argument("--config", help="YAML config (`rddm config calibrate` prints the defaults)")
    p.add_argument("--shards", nargs="+", metavar="SHARDS", help="shards to draw the samples from "
                                                                 "(replaces data.shards)")
    p.add_argument("--num-samples", type=int, help="samples to encode (replaces num_samples)")
    p.add_argument("--out", help="write the updated RVAE here (a copy) instead of updating --rvae in place")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="autocast precision")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("restore", help="restore RAW files with a trained RDDM: DNG/camera RAW, shards or PNG + JSON "
                                       "-> sRGB PNG (any size, tiled)",
                       description="Restore RAW images with a trained RDDM (OUT/rddm of `rddm train`). Writes "
                                   "OUT/<name>.png (sRGB through PTP with the file's own white balance and colour "
                                   "matrix). Bad inputs are reported one per line and the others still restored; the "
                                   "exit status is then 1.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="DNG/camera RAW files, rawsynth shards (.tar), KEY.png "
                                                              "mosaics with KEY.json, or folders of them")
    p.add_argument("--model", required=True, metavar="DIR", help="the RDDM folder (OUT/rddm of `rddm train`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--sd-model", metavar="DIR", help="the local SD-2.1 folder, if not where the model was trained")
    p.add_argument("--rvae", metavar="DIR", help="the RVAE folder, if not where the model was trained")
    p.add_argument("--prompt", metavar="TEXT", help="a fixed prompt for every image (default: the empty prompt)")
    p.add_argument("--prompt-extractor", metavar="SPEC", help='none (default), \'fixed:"TEXT"\', tagger:PATH or '
                                                              "python:module:Class[:PATH]")
    p.add_argument("--ddnet", metavar="DIR", help="DDNet folder for prompt extractors that read the image "
                                                  "(bilinear demosaic without)")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="network precision (default auto: bf16/fp16 on a GPU, fp32 on the CPU)")
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels (default 512; 0: whole image)")
    p.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in pixels (default: a quarter of --tile)")
    p.add_argument("--tile-batch", type=int, default=1, help="tiles per network call (default 1)")
    p.add_argument("--norm-stats", choices=["tile", "global", "pooled"], default="tile",
                   help="GroupNorm statistics of the tiles: tile (default; each tile its own, as in training), "
                        "pooled (exact full-resolution statistics pooled over all tiles run as one batch: closest "
                        "to the untiled result, about the untiled pass's memory) or global (one pass on a binned "
                        "copy of the whole image; measured worst on a noisy mosaic, see docs/rddm.md)")
    p.add_argument("--norm-stats-size", type=int, metavar="PX", help="longest side in pixels of the downscaled copy "
                   "for --norm-stats global (default: 1024 or --tile if larger; more is closer and needs more memory)")
    p.add_argument("--bits", type=int, choices=[8, 16], default=8, help="bits per channel of the sRGB PNG (default 8)")
    p.add_argument("--save-linear", action="store_true", help="also write the 16-bit linear image to OUT/linear/")
    p.add_argument("--linear-format", choices=["png", "tiff"], default="png", help="file format of --save-linear")
    p.add_argument("--overwrite", action="store_true", help="restore images whose outputs exist (default: skip)")
    p.add_argument("--highlights", choices=["white", "keep"], default="white",
                   help="camera files: 2x2 blocks with a clipped sample render white (default, as LibRaw's clip mode) "
                        "or keep the restorer's output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("config", help="print a stage's default config (a starting point for --config)")
    p.add_argument("stage", choices=sorted(STAGES))
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``rddm`` command; returns the exit status (2 for user errors)."""
    return run_cli(build_parser(), argv, hints={
        "train-ddnet": "resume with --resume", "train-rvae": "resume with --resume",
        "train": "resume with --resume"})


if __name__ == "__main__":
    sys.exit(main())
