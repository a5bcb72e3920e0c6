"""The ``rawsynth`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._version import __version__
from ._cli import run_cli


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    path = run_demo(args.out, seed=args.seed, size=args.size)
    print(f"wrote {path} (and a DNG, a 16-bit PNG and a JSON per photo in {args.out})")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from .mns import list_noise_profiles, load_noise_profile

    if args.name:
        print(json.dumps(load_noise_profile(args.name).to_dict(), indent=2))
    else:
        print("\n".join(list_noise_profiles()))
    return 0


RUN_KEYS = ("seed", "shard_size", "num_samples", "workers")


def _split_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """Merge defaults < ``--config`` file < command-line flags into (synthesis config dict, run options)."""
    from .pipeline import load_config

    d = load_config(args.config) if args.config else {}
    run = {k: d.pop(k) for k in RUN_KEYS if k in d}
    flags = {"mode": args.mode, "crop": args.crop, "crops_per_image": args.crops_per_image,
             "small_policy": args.small_images, "noise_profile": args.noise_profile,
             "save_srgb": args.save_srgb or None, "save_dng": args.save_dng or None, "members": args.members,
             "format_version": args.format_version}
    if args.format_version == 1 and args.members is None:
        flags["members"] = "png"  # the only members format 1 has
    d.update({k: v for k, v in flags.items() if v is not None})
    if args.patterns:
        d["patterns"] = [p.strip().upper() for p in args.patterns.split(",") if p.strip()]
    if args.iso_range:
        d["iso_range"] = list(args.iso_range)
    if args.scale is not None:
        d["degradation"] = dict(d.get("degradation") or {}, scale=args.scale)
    for k in RUN_KEYS:
        v = getattr(args, k)
        if v is not None:
            run[k] = v
    return d, run


def _cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate
    from .pipeline import SynthConfig
    from .sources import collect_sources

    cfg_dict, run = _split_config(args)
    config = SynthConfig.from_dict(cfg_dict)
    sources = collect_sources(args.src)
    summary = generate(sources, args.out, config, seed=int(run.get("seed", 0)),
                       shard_size=int(run.get("shard_size", 1000)), num_samples=run.get("num_samples"),
                       workers=int(run.get("workers") or os.cpu_count() or 1), resume=args.resume,
                       overwrite=args.overwrite, progress=not args.no_progress, backend=args.backend,
                       scheduler=args.scheduler, retries=args.retries, scheduler_timeout=args.scheduler_timeout)
    print(f"rawsynth generate: {summary.line()} -> {args.out}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from .pipeline import SynthConfig

    d = SynthConfig().to_dict()
    d.update(seed=0, shard_size=1000, workers=None, num_samples=None)
    print(yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=110), end="")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_dataset

    report = inspect_dataset(args.dir)
    print(report.text())
    return 0 if report.ok else 1


def _cmd_preview(args: argparse.Namespace) -> int:
    from .inspect import preview_dataset

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

    p = sub.add_parser("profiles", help="list the bundled noise profiles, or print one")
    p.add_argument("name", nargs="?", help="a bundled profile name or a JSON file")
    p.set_defaults(func=_cmd_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``rawsynth`` command; returns the exit status (2 for user errors)."""
    return run_cli(build_parser(), argv, hints={
        "generate": "finished shards are kept; fix the problem and rerun with --resume"})


if __name__ == "__main__":
    sys.exit(main())
