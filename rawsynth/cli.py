"""The ``rawsynth`` command line. See ``docs/generate.md``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from ._version import __version__
from ._cli import run_cli
from ._config import load_yaml, with_path
from .errors import ConfigError

if TYPE_CHECKING:
    from .generate_config import GenerateConfig


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    path = run_demo(args.out, seed=args.seed, size=args.size)
    print(f"wrote {path} (and a DNG, a 16-bit PNG and a JSON per photo in {args.out})")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from .mns import list_noise_profiles, load_noise_profile

    if args.name:
        print(json.dumps(load_noise_profile(args.name).to_dict(), indent=2))
        return 0
    for name in list_noise_profiles():
        p = load_noise_profile(name)
        kind = "physics" if p.kind == "physics" else f"eq11/{p.kind.value}"
        cam = getattr(p, "camera", None)
        src = getattr(p, "source", "") or p.description.split(";")[0]
        print(f"{name:14s} {kind:15s} {(cam.make + ' ' + cam.model) if cam else '-':22s} {src}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    result = calibrate(args.bias, args.flat, args.out, name=args.name, plots=not args.no_plots)
    print(result.summary())
    return 0


def __getattr__(name: str):
    if name == "RUN_KEYS":  # the old name of GenerateConfig.RUN_KEYS (importing it here would load torch)
        from .generate_config import GenerateConfig

        return GenerateConfig.RUN_KEYS
    raise AttributeError(f"module 'rawsynth.cli' has no attribute {name!r}")


def _generate_config(args: argparse.Namespace) -> GenerateConfig:
    """Defaults < ``--config`` file < command-line flags."""
    from .generate_config import GenerateConfig

    d = load_yaml(args.config) if args.config else {}
    flags = {"mode": args.mode, "crop": args.crop, "crops_per_image": args.crops_per_image,
             "small_policy": args.small_images, "noise_profile": args.noise_profile,
             "save_srgb": args.save_srgb or None, "save_dng": args.save_dng or None, "members": args.members,
             "format_version": args.format_version}
    if args.format_version == 1 and args.members is None:
        flags["members"] = "png"  # the only members format 1 has
    d.update({k: v for k, v in flags.items() if v is not None})
    if args.cameras:
        d["cameras"] = _camera_config(args.cameras, args.ccm)
    elif args.ccm:
        d["cameras"] = dict(d.get("cameras") or {}, ccm=args.ccm)
    if args.patterns:
        d["patterns"] = [p.strip().upper() for p in args.patterns.split(",") if p.strip()]
    if args.iso_range:
        d["iso_range"] = list(args.iso_range)
    if args.scale is not None:
        d["degradation"] = dict(d.get("degradation") or {}, scale=args.scale)
    d.update({k: getattr(args, k) for k in GenerateConfig.RUN_KEYS if getattr(args, k) is not None})
    try:
        return GenerateConfig.from_dict(d)
    except ConfigError as e:
        raise (with_path(e, args.config) if args.config else e) from None


def _camera_config(text: str, ccm: str | None) -> dict:
    from .cameras import CameraConfig

    return CameraConfig.parse(text, ccm).to_dict()


def _cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate
    from .sources import collect_sources

    cfg = _generate_config(args)
    sources = collect_sources(args.src)
    summary = generate(sources, args.out, cfg.synth, seed=cfg.seed, shard_size=cfg.shard_size,
                       num_samples=cfg.num_samples, workers=int(cfg.workers or os.cpu_count() or 1),
                       resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                       backend=args.backend, scheduler=args.scheduler, retries=args.retries,
                       scheduler_timeout=args.scheduler_timeout)
    print(f"rawsynth generate: {summary.line()} -> {args.out}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from .generate_config import GenerateConfig

    d = GenerateConfig().to_dict()
    print(yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=110), end="")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .dataset_check import inspect_dataset

    report = inspect_dataset(args.dir)
    print(report.text())
    return 0 if report.ok else 1


def _cmd_preview(args: argparse.Namespace) -> int:
    from .dataset_check import preview_dataset

    path = preview_dataset(args.dir, args.out, n=args.n, size=args.size)
    print(f"wrote {path}")
    return 0


def _iso_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'LO,HI', got {text!r}") from None
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawsynth",
        description="Synthesise RAW-domain LQ-HQ training pairs from sRGB photos (IPTP + MNS, RDDM paper Fig. 5).")
    parser.add_argument("--version", action="version", version=f"rawsynth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="ISP round trip on the photos bundled with scikit-image; writes a picture, "
                                    "DNGs, 16-bit PNGs and metadata")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ISP/noise/pattern draws (default: 0)")
    p.add_argument("--size", type=int, default=256, help="centre crop size in pixels (default: 256)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("generate", help="synthesise RAW LQ-HQ pairs from sRGB photos into webdataset shards",
                       description="Synthesise RAW LQ-HQ training pairs into webdataset shards. With no SRC, uses "
                                   "the photos bundled with scikit-image. Flags override --config.")
    p.add_argument("src", nargs="*", metavar="SRC", help="image folders, image files, or .txt lists of paths")
    p.add_argument("--out", required=True, help="output folder (shards, stats, manifest.json), or an fsspec URL "
                   "such as s3://bucket/prefix")
    p.add_argument("--config", help="YAML config (synthesis keys of SynthConfig plus seed, shard_size, "
                                    "num_samples, workers)")
    p.add_argument("--mode", choices=["rddm", "ddnet"], help="pair type (default rddm)")
    p.add_argument("--num-samples", type=int, help="keep the first N planned samples")
    p.add_argument("--crops-per-image", type=int, help="random crops per source (default 1)")
    p.add_argument("--crop", type=int, help="crop size in pixels (default 512)")
    p.add_argument("--scale", type=int, help="degradation scale factor (default 4)")
    p.add_argument("--patterns", help="comma-separated Bayer patterns drawn uniformly (default all four)")
    p.add_argument("--iso-range", type=_iso_range, metavar="LO,HI", help="ISO range (default: the profile's)")
    p.add_argument("--noise-profile", help="bundled noise profile name or JSON file (default 'default')")
    p.add_argument("--cameras", metavar="A,B|A:W,B:W|virtual[:N]",
                   help="draw a camera profile per sample (noise, sensor, DNG make/model): names from `rawsynth "
                        "profiles` or calibrated JSON files, uniform or weighted; 'virtual:N' for N LED-style "
                        "virtual cameras (docs/cameras.md)")
    p.add_argument("--ccm", choices=["brooks", "camera"], help="colour matrix: Brooks' random mix (default) or "
                                                                "the sampled camera's own (with --cameras)")
    p.add_argument("--small-images", choices=["skip", "reflect"], help="sources smaller than the crop "
                                                                        "(default skip)")
    p.add_argument("--seed", type=int, help="run seed (default 0)")
    p.add_argument("--shard-size", type=int, help="samples per shard (default 1000)")
    p.add_argument("--workers", type=int, help="worker processes (default: CPU count); with --backend dask and no "
                                               "--scheduler, the local Dask cluster's workers")
    p.add_argument("--backend", choices=["local", "dask"], default="local",
                   help="where shard tasks run: this machine (default) or a Dask cluster (same bytes either way)")
    p.add_argument("--scheduler", metavar="ADDR", help="with --backend dask: a running Dask scheduler, e.g. "
                                                       "tcp://10.0.0.1:8786 (default: start a local cluster)")
    p.add_argument("--retries", type=int, default=2, help="with --backend dask: resubmissions of a shard task that "
                                                          "raised (worker deaths are retried by the scheduler)")
    p.add_argument("--scheduler-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="with --scheduler: how long to try to connect (default 30)")
    p.add_argument("--save-srgb", action="store_true", help="also store 8-bit sRGB LQ and GT (lq.png, gt.png)")
    p.add_argument("--save-dng", action="store_true", help="also store each RAW as raw.dng")
    p.add_argument("--members", choices=["npy", "png"], help="how the mosaic and HQ are stored: npy (raw.npy, "
                   "hq.npy; default: exact in every reader) or png (16-bit PNG as raw.png16, hq.png16: ~25%% smaller, "
                   "slower)")
    p.add_argument("--format-version", type=int, choices=[1, 2], help="shard format (default 2; 1 = the former "
                   "raw.png/hq.png format with null metadata values, needs --members png)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run (skips done shards)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("config", help="print the default generate config as YAML (a starting point for --config)")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("inspect", help="counts, histograms, and manifest + checksum verification "
                                       "(exit 1 on any mismatch)")
    p.add_argument("dir", help="a `rawsynth generate` output folder")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("preview", help="contact sheet: sRGB GT | RAW->demosaic->PTP | HQ linear->PTP | LQ")
    p.add_argument("dir", help="a `rawsynth generate` output folder")
    p.add_argument("--out", default="preview.png", help="output PNG (default preview.png)")
    p.add_argument("-n", type=int, default=8, help="samples to show (default 8)")
    p.add_argument("--size", type=int, default=256, help="panel height in pixels (default 256)")
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser("profiles", help="list the bundled noise and camera profiles with their sources, or print one")
    p.add_argument("name", nargs="?", help="a bundled profile name or a JSON file")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("calibrate", help="calibrate a sensor's physics noise from bias and flat RAW frames "
                                         "(profile JSON for generate --noise-profile / --cameras)",
                       description="Bias frames (lens cap on, shortest exposure) and flat pairs (an evenly lit "
                                   "surface, 5+ exposure levels, two frames per level), one subfolder per ISO named "
                                   "by its value, e.g. bias/400/*.dng, flat/400/*.dng. See docs/cameras.md.")
    p.add_argument("--bias", required=True, metavar="DIR", help="folder of bias frames, one subfolder per ISO")
    p.add_argument("--flat", required=True, metavar="DIR", help="folder of flat pairs, one subfolder per ISO")
    p.add_argument("--out", required=True, help="profile JSON to write (plots go beside it)")
    p.add_argument("--name", help="profile name (default: the camera's make and model)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots of the fits")
    p.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``rawsynth`` command; returns the exit status (2 for user errors)."""
    return run_cli(build_parser(), argv, hints={
        "generate": "finished shards are kept; fix the problem and rerun with --resume"})


if __name__ == "__main__":
    sys.exit(main())
