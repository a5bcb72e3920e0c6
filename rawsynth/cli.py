"""The ``rawsynth`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from ._version import __version__
from .errors import RawsynthError


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

    p = sub.add_parser("profiles", help="list the bundled noise profiles, or print one")
    p.add_argument("name", nargs="?", help="a bundled profile name or a JSON file")
    p.set_defaults(func=_cmd_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except RawsynthError as e:
        print(f"rawsynth {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
