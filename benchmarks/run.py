"""Run a third-party method's command over a benchmark's inputs, time it, then score its outputs.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rawsynth.errors import ConfigError

from .bench import Bench
from .errors import BenchmarkError, CommandError
from .scoring.score import ScoreResult, check_method_name, score

__all__ = ["INPUTS", "run_method", "substitute", "rddm_command"]

INPUTS = ("raw", "dng", "srgb", "lq_srgb")


def substitute(template: str, **paths) -> str:
    """Replace ``{name}`` placeholders by shell-quoted values; other braces are left as they are."""
    out = template
    for name, value in paths.items():
        out = out.replace("{" + name + "}", shlex.quote(os.fspath(value)))
    return out


def rddm_command(model: str | os.PathLike, input: str = "raw", extra: str = "") -> str:
    """The folder-mode command template that runs RDDM (``rddm restore``) with the model folder ``model``.

    ``rddm restore`` reads the ``raw/`` folder (``KEY.png`` + ``KEY.json``; with ``input="dng"`` the ``KEY.dng``
    files instead) and writes ``OUTPUT/KEY.png``, sRGB through each image's own PTP, ready for scoring.

    Args:
        model: the RDDM folder (``OUT/rddm`` of ``rddm train``).
        input: ``raw`` or ``dng``.
        extra: more ``rddm restore`` flags, e.g. ``"--device cuda --dtype bf16 --tile 1024"``.

    Raises:
        ConfigError: ``input`` is not a RAW input.
    """
    if input not in ("raw", "dng"):
        raise ConfigError(f"RDDM restores RAW files: use --input raw or dng with --rddm, not {input!r}")
    src = "{input}/*.dng" if input == "dng" else "{input}"
    cmd = (f"{shlex.quote(sys.executable)} -m rddm restore {src} --model "
           f"{shlex.quote(os.path.abspath(os.fspath(model)))} --out {{output}} --no-progress")
    return f"{cmd} {extra}" if extra else cmd


def _input_dir(bench: Bench, input: str, inputs: str | os.PathLike | None) -> Path:
    if input in ("raw", "dng"):
        if input == "dng" and not bench.manifest.get("save_dng"):
            raise ConfigError(f"{bench.root}: built without DNGs; rebuild with --dng or use --input raw")
        return bench.root / "raw"
    elif input == "srgb":
        if not inputs:
            raise ConfigError("--input srgb needs --inputs DIR (made by `python -m benchmarks isp`)")
        d = Path(inputs)
        if not d.is_dir():
            raise BenchmarkError(f"{d}: no such input folder; make it with `python -m benchmarks isp`")
        return d
    elif input == "lq_srgb":
        if not bench.has_gt:
            raise ConfigError(f"{bench.title} has no lq_srgb folder (not a synthetic set)")
        return bench.root / "lq_srgb"
    else:
        raise ConfigError(f"--input must be one of {INPUTS}, got {input!r}")


def _run(cmd: str, cwd: str | None) -> None:
    proc = subprocess.run(cmd, shell=True, cwd=cwd)  # the method's own output goes to our stdout/stderr
    if proc.returncode != 0:
        raise CommandError(f"the method's command failed with exit status {proc.returncode}: {cmd}\n"
                           "  fix the command (its own output is above); nothing was scored")


def run_method(bench_dir: str | os.PathLike, cmd: str, method: str, *, input: str = "raw",
               inputs: str | os.PathLike | None = None, per_image: bool = False,
               pred_dir: str | os.PathLike | None = None, cwd: str | None = None, overwrite: bool = False,
               **score_kwargs: object) -> ScoreResult:
    """Run ``cmd`` (see ``docs/benchmarks.md``), then :func:`~benchmarks.scoring.score.score` its output folder.

    Args:
        bench_dir: the benchmark.
        cmd: shell command template with ``{input}`` and ``{output}``.
        method: leaderboard label.
        input: which inputs the method reads (:data:`INPUTS`).
        inputs: the folder for ``input="srgb"``.
        per_image: run once per image instead of once per folder.
        pred_dir: where the outputs go (default ``BENCH/predictions/METHOD``).
        cwd: working directory of the command.
        overwrite: allow a non-empty ``pred_dir``.
        **score_kwargs: passed to :func:`~benchmarks.scoring.score.score` (metrics, device, weights_dir, ...).

    Raises:
        CommandError: the command exits with a non-zero status.
    """
    bench = Bench.load(bench_dir)
    check_method_name(method)
    if "{output}" not in cmd or "{input}" not in cmd:
        raise ConfigError(f"--cmd must contain {{input}} and {{output}} placeholders, got {cmd!r}")
    in_dir = _input_dir(bench, input, inputs)
    out = Path(pred_dir) if pred_dir else bench.root / "predictions" / method
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BenchmarkError(f"{out}: not empty; pass --overwrite to run into it, or choose another --pred")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if per_image:
        ext = "dng" if input == "dng" else "png"
        for key in bench.keys:
            src = (in_dir / f"{key}.{ext}")
            if not src.is_file():
                raise BenchmarkError(f"{src}: input of image {key} is missing")
            _run(substitute(cmd, input=src.resolve(), output=(out / f"{key}.png").resolve(), key=key,
                            meta=bench.path("meta", key).resolve()), cwd)
    else:
        _run(substitute(cmd, input=in_dir.resolve(), output=out.resolve()), cwd)
    seconds = time.perf_counter() - t0
    info = {"cmd": cmd, "input": input, "inputs": os.fspath(inputs) if inputs else None, "per_image": per_image,
            "seconds": round(seconds, 3), "seconds_per_image": round(seconds / max(len(bench.keys), 1), 4)}
    return score(bench_dir, out, method, run_info=info, **score_kwargs)
