"""``python -m benchmarks``: build, verify, develop, score, tabulate and report the RAW test sets.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rawsynth._cli import run_cli
from rawsynth.errors import ConfigError

from .builders.recipe import recipe_names
from rawsynth.device import DEVICE_HELP, device_arg

__all__ = ["build_parser", "main"]

BUILD_NAMES = (*recipe_names(), "dnd")


def _progress(args) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def _crop(text: str):
    if text == "full":
        return {"policy": "full"}
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a crop size in pixels or 'full', got {text!r}") from None
    return {"policy": "center", "size": n}


def _cmd_build(args) -> int:
    if args.name == "dnd":
        from .dnd import DndRecipe, build_dnd

        if args.crop or args.seed is not None:
            raise ConfigError("build dnd: --crop and --seed do not apply (DND is real data cut into its own "
                              "512x512 boxes)")
        recipe = DndRecipe.load(args.recipe or "dnd")
        summary = build_dnd(args.src, args.out, recipe=recipe, overwrite=args.overwrite,
                            allow_partial=args.allow_partial, save_dng=args.dng or None, progress=_progress(args))
    else:
        from .builders import build_benchmark, detect_layout, load_recipe

        if args.recipe:
            recipe = load_recipe(args.recipe, crop=args.crop, seed=args.seed)
            if recipe.name != args.name:
                raise ConfigError(f"build {args.name}: --recipe {args.recipe} is the recipe of {recipe.name!r}")
        else:  # official layout or StableSR's 512x512 test crops, whichever --src holds
            recipe, _ = detect_layout(args.name, args.src, crop=args.crop, seed=args.seed)
        summary = build_benchmark(recipe, args.src, args.out, overwrite=args.overwrite,
                                  allow_partial=args.allow_partial, save_dng=args.dng or None,
                                  progress=_progress(args))
    layout = "" if args.name == "dnd" else f" [{recipe.layout_title}]"
    print(f"benchmarks build {args.name}{layout}: {summary.line()} -> {summary.out}")
    return 0


def _cmd_verify(args) -> int:
    from .bench import verify_benchmark

    report = verify_benchmark(args.dir)
    print(report.text())
    return 0 if report.ok else 1


def _cmd_isp(args) -> int:
    from .isp import run_isp

    out = run_isp(args.bench, args.out, args.isp, args.demosaic, args.ddnet, args.device or "cpu",
                  overwrite=args.overwrite, progress=_progress(args))
    print(f"benchmarks isp: wrote {args.isp} sRGB inputs to {out}")
    return 0


def _score_kwargs(args) -> dict:
    return {"metrics": args.metrics, "suffixes": tuple(args.suffix or ()), "pred_space": args.pred_space,
            "allow_missing": args.allow_missing, "device": args.device, "batch_size": args.batch_size,
            "weights_dir": args.weights_dir, "allow_download": args.allow_download,
            "verify_weights": args.verify_weights, "progress": _progress(args), "crop_border": args.crop_border,
            "impl": args.impl}


def _print_result(result, bench) -> None:
    print(result.line())
    print(f"  scores: {result.out_dir / 'scores.csv'}, {result.out_dir / 'summary.json'}; leaderboard: "
          f"{Path(bench) / 'leaderboard.json'}")
    if result.summary["missing"]:
        print(f"  {len(result.summary['missing'])} image(s) had no prediction (--allow-missing)")


def _cmd_score(args) -> int:
    from .scoring.score import score

    if args.gt is not None:
        method = args.method or Path(args.pred).resolve().name
        result = score(None, args.pred, method, out_dir=args.out, gt_dir=args.gt, **_score_kwargs(args))
        print(result.line())
        print(f"  scores: {result.out_dir / 'scores.csv'}, {result.out_dir / 'summary.json'}")
        if result.summary["missing"]:
            print(f"  {len(result.summary['missing'])} image(s) had no prediction (--allow-missing)")
        return 0
    if not args.method:
        raise ConfigError("score --bench: give the leaderboard label with --method (e.g. --method 'ISP+SeeSR-s50')")
    result = score(args.bench, args.pred, args.method, out_dir=args.out, **_score_kwargs(args))
    _print_result(result, args.bench)
    return 0


def _run_cmd(args) -> str:
    """``--cmd``, or the ``rddm restore`` command of ``--rddm MODEL``."""
    from .run import rddm_command

    if args.rddm is None:
        if args.cmd is None:
            raise ConfigError("run: give the method's command with --cmd, or --rddm MODEL_DIR to run RDDM")
        return args.cmd
    if args.cmd is not None or args.per_image:
        raise ConfigError("run: --rddm runs `rddm restore` once over the folder; drop --cmd and --per-image")
    return rddm_command(args.rddm, args.input, args.rddm_args or "")


def _cmd_run(args) -> int:
    from .run import run_method

    result = run_method(args.bench, _run_cmd(args), args.method, input=args.input, inputs=args.inputs,
                        per_image=args.per_image, pred_dir=args.pred, cwd=args.cwd, overwrite=args.overwrite,
                        out_dir=args.out, **_score_kwargs(args))
    run = result.summary["run"]
    print(f"benchmarks run: {args.method} took {run['seconds']:.1f} s ({run['seconds_per_image']:.3f} s/image)")
    _print_result(result, args.bench)
    return 0


def _cmd_table(args) -> int:
    from rawsynth.io import atomic_output

    from .report.table import render_markdown

    text = render_markdown(args.bench, published=not args.no_published)
    if args.out:
        with atomic_output(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"benchmarks table: wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _cmd_report(args) -> int:
    from .report.html import build_report

    out = build_report(args.bench, args.out, crops=args.crops, crop_size=args.crop_size,
                       published=not args.no_published)
    print(f"benchmarks report: wrote {out}")
    return 0


def _cmd_dnd_submit(args) -> int:
    from .dnd_submit import write_submission

    pred = args.pred
    if args.rddm is not None:
        from .run import _run, rddm_command, substitute

        if pred is not None:
            raise ConfigError("dnd-submit: give --pred (a method's outputs) or --rddm (run RDDM now), not both")
        from .bench import Bench

        bench = Bench.load(args.bench)
        runs = Path(args.out) / "rddm-outputs"
        cmd = rddm_command(args.rddm, "raw", ((args.rddm_args or "") + " --save-linear").strip())
        _run(substitute(cmd, input=bench.root / "raw", output=runs), None)
        pred = runs / "linear" if args.track == "raw" else runs
    elif pred is None:
        raise ConfigError("dnd-submit: give the method's outputs with --pred DIR, or --rddm MODEL_DIR to run RDDM")
    summary = write_submission(args.bench, pred, args.out, args.track, suffixes=tuple(args.suffix or ()),
                               overwrite=args.overwrite)
    print(f"benchmarks dnd-submit: {summary.line()}")
    return 0


def _cmd_weights(args) -> int:
    from .scoring.metrics import parse_metrics
    from .scoring.weights import check_weights, download_weights

    metrics = parse_metrics(args.metrics)
    if args.download:
        report = download_weights(metrics, args.weights_dir, progress=_progress(args))
    else:
        report = check_weights(metrics, args.weights_dir, verify=args.verify)
    print(report.text())
    if report.missing:
        print(f"{len(report.missing)} file(s) missing: copy them to the paths above, or run `python -m benchmarks "
              "weights --download` on a machine with internet and copy the folder over")
    return 0 if report.ok and not report.notes else 1


def _add_score_options(p: argparse.ArgumentParser, method_required: bool = True) -> None:
    p.add_argument("--method", required=method_required,
                   help="label of the method in the leaderboard (e.g. 'ISP+SeeSR-s50')"
                        + ("" if method_required else "; with --gt, default: the --pred folder's name"))
    p.add_argument("--metrics", help="comma-separated subset of psnr,ssim,psnr_y,ssim_y,lpips,dists,fid,niqe,musiq,"
                                     "clipiqa, or 'all' (default: the paper's psnr,ssim,lpips,dists,fid,niqe,musiq,"
                                     "clipiqa that apply; no-reference only without ground truth)")
    p.add_argument("--crop-border", type=int, default=0, metavar="N",
                   help="remove N pixels at every edge before PSNR/SSIM (pyiqa's crop_border; default 0)")
    p.add_argument("--impl", choices=["fast", "pyiqa"], default="fast",
                   help="PSNR/SSIM implementation: fast (batched float32, equal to pyiqa to <1e-5; default) or "
                        "pyiqa itself")
    p.add_argument("--suffix", action="append", help="a method-specific suffix of the output names to strip when "
                                                     "pairing (repeatable); _HR, _LR4, _x1, _out, ... always are")
    p.add_argument("--pred-space", choices=["srgb", "linear"], default="srgb",
                   help="srgb: 8/16-bit sRGB images (default); linear: 16-bit linear camera RGB (RDDM's output), "
                        "developed with each image's own PTP")
    p.add_argument("--allow-missing", action="store_true", help="score the images that have a prediction and "
                                                                "report the count")
    p.add_argument("--device", type=device_arg, default="auto", help=f"metric device: {DEVICE_HELP}")
    p.add_argument("--batch-size", type=int, default=8, help="images per metric call (default 8)")
    p.add_argument("--weights-dir", help=f"pyiqa weights folder, laid out like TORCH_HOME (default: "
                                         f"${'RAWSYNTH_WEIGHTS_DIR'}, else $TORCH_HOME, else ~/.cache/torch)")
    p.add_argument("--allow-download", action="store_true", help="let pyiqa download missing weights (off by "
                                                                 "default: missing weights are an error)")
    p.add_argument("--verify-weights", action="store_true", help="check the weights' published SHA-256 first")
    p.add_argument("--out", help="folder for scores.csv and summary.json (default BENCH/results/METHOD)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="RAW-domain restoration benchmarks (RDDM paper Sec. 4.1): build the DIV2K-Val / RealSR / DRealSR "
                    "RAW test sets and DND, make two-stage sRGB inputs, score methods with pyiqa, and report.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("build", help="build a RAW test set from its official download",
                       description="Build a RAW test set. Synthetic sets (div2k-val, realsr, drealsr) follow the "
                                   "recipe in benchmarks/recipes/NAME.yaml; dnd converts the real DND RAW files.")
    p.add_argument("name", choices=BUILD_NAMES, help="which test set")
    p.add_argument("--src", required=True, help="the dataset download (e.g. the folder holding DIV2K_valid_HR/)")
    p.add_argument("--out", required=True, help="output benchmark folder (new or empty)")
    p.add_argument("--recipe", help="a recipe YAML to use instead of the bundled one")
    p.add_argument("--crop", type=_crop, help="override the recipe's crop: a centre crop size in pixels or 'full'")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--dng", action="store_true", help="also write raw/KEY.dng")
    p.add_argument("--allow-partial", action="store_true", help="build from the images found even if some are "
                                                                "missing (marked incomplete)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the benchmark in --out (its scores are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("verify", help="re-hash a benchmark's files against its manifest (exit 1 on any mismatch)")
    p.add_argument("dir", help="a benchmark folder")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("isp", help="develop a RAW benchmark into sRGB inputs for sRGB restorers (two-stage)")
    p.add_argument("--bench", required=True, help="a benchmark folder")
    p.add_argument("--out", required=True, help="output folder for KEY.png")
    p.add_argument("--isp", choices=["classical", "ddnet"], default="classical",
                   help="classical: demosaic + PTP (default); ddnet: the learned DDNet + PTP (needs the rddm extra)")
    p.add_argument("--demosaic", choices=["bilinear", "opencv-ea"], default="bilinear",
                   help="demosaic of the classical ISP (default bilinear)")
    p.add_argument("--ddnet", help="DDNet checkpoint folder (DDNet.save_pretrained) for --isp ddnet")
    p.add_argument("--device", type=device_arg, help="device for DDNet: auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_isp)

    p = sub.add_parser("score", help="score a method's outputs; writes scores.csv, summary.json, leaderboard.json")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--bench", help="a benchmark folder")
    g.add_argument("--gt", help="a folder of ground-truth images to score against instead of a benchmark (paired "
                                "by name; no leaderboard; scores go to PRED-scores/ unless --out)")
    p.add_argument("--pred", required=True, help="the method's outputs, one image per benchmark image")
    _add_score_options(p, method_required=False)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("run", help="run a third-party method's command over the inputs, time it, then score it",
                       description="Run CMD (a shell command line with {input} and {output}; with --per-image also "
                                   "{key} and {meta}) over the benchmark's inputs, time it and score its outputs.")
    p.add_argument("--bench", required=True, help="a benchmark folder")
    p.add_argument("--cmd", help="command template, e.g. \"python infer.py -i {input} -o {output}\"")
    p.add_argument("--rddm", metavar="MODEL_DIR", help="run RDDM instead of --cmd: `rddm restore` with this model "
                                                       "folder (OUT/rddm of `rddm train`) over raw/ (or its DNGs)")
    p.add_argument("--rddm-args", metavar="ARGS", help="more `rddm restore` flags for --rddm, e.g. "
                                                       "\"--device cuda --dtype bf16 --tile 1024\"")
    p.add_argument("--input", choices=["raw", "dng", "srgb", "lq_srgb"], default="raw",
                   help="what the method reads: raw/ (default), its DNGs, two-stage sRGB (--inputs) or lq_srgb/")
    p.add_argument("--inputs", help="the two-stage input folder for --input srgb (from `benchmarks isp`)")
    p.add_argument("--per-image", action="store_true", help="run the command once per image")
    p.add_argument("--pred", help="where the method writes its outputs (default BENCH/predictions/METHOD)")
    p.add_argument("--cwd", help="working directory of the command")
    p.add_argument("--overwrite", action="store_true", help="run into a non-empty --pred")
    _add_score_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("table", help="Markdown table of the leaderboard(s) with the paper's published rows")
    p.add_argument("--bench", required=True, action="append", help="a benchmark folder (repeatable)")
    p.add_argument("--no-published", action="store_true", help="leave out the paper's published rows")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("report", help="static HTML report: table, charts, PSNR-vs-LPIPS scatter, comparison crops")
    p.add_argument("--bench", required=True, action="append", help="a benchmark folder (repeatable)")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--crops", type=int, default=4, help="images shown as comparison crops (default 4)")
    p.add_argument("--crop-size", type=int, default=128, help="side of the comparison crops (default 128)")
    p.add_argument("--no-published", action="store_true", help="leave out the paper's published rows")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("dnd-submit", help="write a DND submission (per-box .mat files + bundled/) for the RAW or "
                                          "sRGB track, in the official submission kit's format",
                       description="Write OUT/NNNN_BB.mat (Idenoised_crop) and OUT/bundled/NNNN.mat (Idenoised, "
                                   "israw, eval_version) as DND's dnd_denoise.py / bundle_submissions.py do; upload "
                                   "the content of OUT/bundled.")
    p.add_argument("--bench", required=True, help="a DND benchmark (python -m benchmarks build dnd)")
    p.add_argument("--pred", help="the method's outputs, one file per box (KEY.png / .tif / .npy): RAW track: 16-bit "
                                  "mosaic (DN) or 16-bit linear RGB (re-mosaicked); sRGB track: sRGB images")
    p.add_argument("--rddm", metavar="MODEL_DIR", help="run `rddm restore --save-linear` over the boxes first and "
                                                       "submit its outputs")
    p.add_argument("--rddm-args", metavar="ARGS", help="more `rddm restore` flags for --rddm")
    p.add_argument("--track", choices=["raw", "srgb"], default="raw", help="raw (default) or srgb")
    p.add_argument("--out", required=True, help="submission folder (new or empty)")
    p.add_argument("--suffix", action="append", help="a suffix of the output names to strip when pairing")
    p.add_argument("--overwrite", action="store_true", help="replace the submission files in --out")
    p.set_defaults(func=_cmd_dnd_submit)

    p = sub.add_parser("weights", help="list the weight files the metrics need and which are missing "
                                       "(exit 1 if any); --download fetches them")
    p.add_argument("--metrics", help="metrics to check (default all)")
    p.add_argument("--weights-dir", help="the weights folder (default $RAWSYNTH_WEIGHTS_DIR, $TORCH_HOME, "
                                         "~/.cache/torch)")
    p.add_argument("--verify", action="store_true", help="hash present files against their published SHA-256")
    p.add_argument("--download", action="store_true", help="download the missing files (needs internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m benchmarks``; returns the exit status (2 for user errors)."""
    return run_cli(build_parser(), argv, traceback_env="BENCHMARKS_TRACEBACK", name="benchmarks")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
