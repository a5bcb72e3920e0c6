"""``rddm restore``: load a trained RDDM, restore RAW files of any size, write sRGB (and linear) images.
See ``docs/rddm.md``."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rawsynth.device import resolve_device
from rawsynth.errors import InputError, RawsynthError
from rawsynth.isp import ISPParams
from rawsynth.mns import Pattern, pack, unpack

from ..errors import ConfigError
from .highlights import HIGHLIGHT_POLICIES, apply_highlight_policy
from .inputs import RawInput, find_inputs, read_source
from .outputs import LINEAR_FORMATS, neutral_isp, output_paths, write_linear, write_srgb
from .restorer import DEFAULT_NORM_STATS, DEFAULT_TILE, Restorer

__all__ = ["DTYPES", "RestoreOptions", "RestoreReport", "RestorePipeline", "restore_files", "resolve_device",
           "resolve_dtype", "prompt_mosaic", "PROMPT_MAX_SIDE"]

#: ``--dtype`` names.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Longest side of the mosaic the prompt extractor renders (larger mosaics are binned, see :func:`prompt_mosaic`).
PROMPT_MAX_SIDE = 1024

PromptFn = Callable[[torch.Tensor, Pattern, ISPParams], torch.Tensor]


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto``/``None`` → bf16 on a GPU that supports it, else fp16 on a GPU, fp32 on the CPU; else
    :data:`DTYPES`."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}", fix=f"use auto or one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def prompt_mosaic(raw: torch.Tensor, pattern: Pattern, max_side: int = PROMPT_MAX_SIDE) -> torch.Tensor:
    """The mosaic the prompt extractor renders: ``raw`` itself when its longer side is at most ``max_side``,
    else its 2×2 Bayer planes averaged over ``k×k`` blocks (``k`` the smallest integer that brings the longer
    side under ``max_side``), re-mosaicked with the same pattern. A tagger resizes its input to a few hundred
    pixels anyway; this keeps DDNet + PTP of a 24-MP RAW cheap."""
    h, w = raw.shape[-2:]
    k = math.ceil(max(h, w) / max_side)
    if k <= 1:
        return raw
    planes = F.avg_pool2d(pack(raw.float(), pattern), k)
    return unpack(planes, pattern)


class RestorePipeline:
    """RDDM inference on one :class:`~rddm.restore.inputs.RawInput` at a time.

    Args:
        restorer: the tiled model (:class:`~rddm.restore.restorer.Restorer`).
        prompt: ``(raw (1, 1, H, W), pattern, isp) -> (1, L, D)`` prompt embedding.
        device: where the mosaic is put (the model's device).
    """

    def __init__(self, restorer: Restorer, prompt: PromptFn, device: str | torch.device = "cpu"):
        self.restorer = restorer
        self.prompt = prompt
        self.device = torch.device(device)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, sd_model: str | os.PathLike | None = None,
             rvae_model: str | os.PathLike | None = None, prompt: str | None = None,
             prompt_extractor: str | None = None, ddnet: str | os.PathLike | None = None,
             device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = "auto",
             tile: int | None = DEFAULT_TILE, overlap: int | None = None, tile_batch: int = 1,
             norm_stats: str = DEFAULT_NORM_STATS, norm_stats_size: int | None = None) -> RestorePipeline:
        """Load a trained RDDM folder (``rddm train``'s ``OUT/rddm``) and its prompt encoder.

        Args:
            model_dir: the RDDM folder.
            sd_model: overrides the SD-2.1 folder recorded in the RDDM folder.
            rvae_model: overrides the RVAE folder recorded in the RDDM folder.
            prompt: a fixed prompt text (``fixed:"TEXT"``); exclusive with ``prompt_extractor``.
            prompt_extractor: a :func:`rddm.prompts.build_extractor` spec (default ``none``: the empty prompt).
            ddnet: DDNet folder for the RAW prompt extraction of extractors that read images (bilinear without).
            device: see :func:`resolve_device`.
            dtype: see :func:`resolve_dtype`.
            tile: see :class:`~rddm.restore.restorer.Restorer`.
            overlap: see :class:`~rddm.restore.restorer.Restorer`.
            tile_batch: see :class:`~rddm.restore.restorer.Restorer`.
            norm_stats: GroupNorm statistics of the tiles, ``tile`` (default), ``pooled`` or ``global``
                (``norm_stats`` of :class:`~rddm.restore.restorer.Restorer`).
            norm_stats_size: longest side of the statistics pass in pixels (``stats_size`` there).

        Raises:
            ConfigError, WeightsError: bad options or folders (named, with the fix).
        """
        from ..models.rddm import RDDM
        from ..prompts import RawPromptExtractor

        if prompt is not None and prompt_extractor not in (None, "none"):
            raise ConfigError("--prompt and --prompt-extractor exclude each other",
                              fix='give one: --prompt "TEXT" is the same as --prompt-extractor \'fixed:"TEXT"\'')
        spec = 'fixed:"' + prompt + '"' if prompt is not None else (prompt_extractor or "none")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        model = RDDM.from_pretrained(model_dir, sd_model=sd_model, rvae_model=rvae_model)
        model = model.to(device=dev, dtype=dt).eval()
        sd = sd_model if sd_model is not None else model.config.sd_model
        rpe = RawPromptExtractor.build(sd, extractor=spec, ddnet=ddnet, device=dev,
                                       dtype=torch.float32 if dev.type == "cpu" else dt)

        def prompt_fn(raw: torch.Tensor, pattern: Pattern, isp: ISPParams) -> torch.Tensor:
            src = prompt_mosaic(raw, pattern) if rpe.uses_image else raw
            return rpe.embeds(src, [pattern], [isp])

        restorer = Restorer(model, tile=tile, overlap=overlap, tile_batch=tile_batch, dtype=dt, norm_stats=norm_stats,
                            stats_size=norm_stats_size)
        return cls(restorer, prompt_fn, dev)

    def __call__(self, item: RawInput) -> torch.Tensor:
        """``(1, 3, H, W)`` float32 linear camera RGB of ``item`` (CPU), not clipped."""
        raw = torch.from_numpy(item.raw)[None, None].to(self.device)
        isp = item.isp if item.isp is not None else neutral_isp()
        emb = self.prompt(raw, item.pattern, isp)
        return self.restorer(raw, item.pattern, emb.to(self.device)).float().cpu()


@dataclass(frozen=True)
class RestoreOptions:
    """Output options of :func:`restore_files`.

    Attributes:
        bits: 8 or 16 bits per channel of the sRGB PNG.
        save_linear: also write the linear image to ``OUT/linear/``.
        linear_format: ``png`` or ``tiff`` (16-bit, :data:`~rddm.restore.outputs.LINEAR_FORMATS`).
        overwrite: restore images whose outputs exist (default: skip them).
        highlights: what happens where a camera file clipped (:mod:`rddm.restore.highlights`): ``white``
            (default) or ``keep``.
    """

    bits: int = 8
    save_linear: bool = False
    linear_format: str = "png"
    overwrite: bool = False
    highlights: str = "white"

    def __post_init__(self):
        if self.bits not in (8, 16):
            raise ConfigError(f"--bits must be 8 or 16, got {self.bits}")
        if self.linear_format not in LINEAR_FORMATS:
            raise ConfigError(f"--linear-format must be one of {sorted(LINEAR_FORMATS)}, got {self.linear_format!r}")
        if self.highlights not in HIGHLIGHT_POLICIES:
            raise ConfigError(f"--highlights must be one of {', '.join(HIGHLIGHT_POLICIES)}, got {self.highlights!r}")


@dataclass
class RestoreReport:
    """What :func:`restore_files` did: output names ``written`` and ``skipped`` (outputs existed), ``failed``
    errors (one per unusable input), ``notes``, and the wall time."""

    out_dir: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[RawsynthError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        return (f"{len(self.written)} restored, {len(self.skipped)} skipped (outputs exist; --overwrite to redo), "
                f"{len(self.failed)} failed in {self.seconds:.1f} s -> {self.out_dir}")


def _stderr(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def restore_files(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  pipeline: RestorePipeline | Callable[[], RestorePipeline], options: RestoreOptions = RestoreOptions(),
                  *, progress: bool = False, log: Callable[[str], None] | None = None) -> RestoreReport:
    """Restore every input of ``paths`` into ``out_dir``.

    Args:
        paths: files and folders (:func:`~rddm.restore.inputs.find_inputs`).
        out_dir: output folder (created).
        pipeline: the :class:`RestorePipeline`, or a function that builds it: then it is built only when a first
            image needs restoring (nothing is loaded when every output exists).
        options: :class:`RestoreOptions`.
        progress: a tqdm bar over the input files.
        log: receives one line per failed input and per note (default: stderr, through tqdm).

    Returns:
        A :class:`RestoreReport`. Errors of single inputs are in it, never raised.

    Raises:
        ConfigError, WeightsError: building the pipeline failed (nothing can be restored).
        OSError: the output folder cannot be written.
    """
    from tqdm import tqdm

    log = log or _stderr
    t0 = time.perf_counter()
    out = Path(out_dir)
    report = RestoreReport(out)
    found = find_inputs(paths)
    report.notes.extend(found.notes)
    for note in found.notes:
        log(f"note: {note}")
    for err in found.errors:
        report.failed.append(err)
        log(f"error: {err}")
    out.mkdir(parents=True, exist_ok=True)
    pipe = pipeline if isinstance(pipeline, RestorePipeline) else None
    seen: dict[str, str] = {}

    def fail(err: RawsynthError) -> None:
        report.failed.append(err)
        log(f"error: {err}")

    bar = tqdm(found.sources, desc="rddm restore", unit="file", disable=not progress, file=sys.stderr)
    for source in bar:
        for item in read_source(source):
            if isinstance(item, InputError):
                fail(item)
                continue
            if item.name in seen:
                fail(InputError(item.source, "duplicate name", detail=f"{seen[item.name]} also writes "
                                f"{item.name}.png", hint="restore the two into different --out folders"))
                continue
            seen[item.name] = item.source
            paths_out = output_paths(out, item.name, options.save_linear, options.linear_format)
            if paths_out.exist() and not options.overwrite:
                report.skipped.append(item.name)
                continue
            if pipe is None:
                pipe = pipeline()
            try:
                linear = pipe(item)
            except torch.OutOfMemoryError:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                fail(InputError(item.source, "out of memory", detail=f"{item.raw.shape[0]}x{item.raw.shape[1]} "
                                "mosaic", hint="use a smaller --tile or --tile-batch, or --dtype bf16/fp16"))
                continue
            except RawsynthError as e:
                fail(e)
                continue
            isp = item.isp
            if isp is None:
                isp = neutral_isp()
                note = f"{item.source}: no colour metadata in the file; the sRGB PNG uses an identity colour " \
                       "matrix and unit white balance"
                report.notes.append(note)
                log(f"note: {note}")
            linear = apply_highlight_policy(linear, item.saturated, isp, options.highlights)
            write_srgb(paths_out.srgb, linear, isp, options.bits)
            if paths_out.linear is not None:
                write_linear(paths_out.linear, linear)
            report.written.append(item.name)
    report.seconds = time.perf_counter() - t0
    return report
