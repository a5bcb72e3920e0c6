"""Validation while training (every stage): held-out samples → PSNR/SSIM (LPIPS when its weights are found) in
the stage's domains, logged to ``metrics.jsonl`` and TensorBoard, plus a fixed image grid.

What a validation does (config :class:`~rddm.train.val_config.ValidationConfig`, every ``every`` steps and at
the last step, with the EMA weights when ``ema`` is set):

* **Data**: the first ``max_samples`` samples of ``validation.shards``, read with the training reader
  (:func:`rawsynth.data.make_dataset`, file order, no random crop, no flips, no shuffle) and of
  ``validation.benchmark`` (a ``python -m benchmarks build`` folder: ``raw/KEY.png`` + ``KEY.json`` → the
  normalised mosaic, ``gt_linear/KEY.png`` → the linear target), in sorted key order; optionally centre-cropped
  (even offsets, the Bayer pattern follows). The same pixels every time.
* **Prediction**: the stage's ``predict(batch) → (B, 3, H, W)`` linear RGB in eval mode without gradients
  (DDNet: the demosaiced RAW; RVAE: ``D(E(x))`` with the posterior's mode; RDDM: the one-step restoration).
* **Metrics** per sample, averaged: ``linear_psnr``/``linear_ssim`` on the linear images clipped to ``[0, 1]``,
  ``srgb_psnr``/``srgb_ssim`` (and ``srgb_lpips``) after each sample's own PTP (:func:`rddm.losses.to_srgb`),
  float (not quantised), RGB on 3 channels (no Y channel), data range 1. PSNR is ``10·log10(1/MSE)`` over
  all pixels and channels of a sample; SSIM is Wang et al.'s with an 11-tap Gaussian window (σ = 1.5),
  ``K1 = 0.01``, ``K2 = 0.03``, per channel over the valid region, averaged over channels — the same numbers as
  ``skimage.metrics.structural_similarity(..., channel_axis=0, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` (tested against it). ``rddm`` may not import ``benchmarks``
  (``benchmarks`` imports ``rddm``), hence these formulas rather than ``benchmarks.scoring``.
* **Records**: one ``metrics.jsonl`` line per source and validation, ``{"step": N, "val/linear_psnr": ...,
  "val/samples": ..., "val/seconds": ...}`` (``val_bench/...`` for the benchmark), the same scalars in
  TensorBoard, and the grid (rows: the first ``grid_samples`` samples; columns: the RAW mosaic shown in grey
  with gamma 1/2.2 for the stages that read RAW, the prediction and the target, both in sRGB) as
  ``OUT/validation/<prefix>-step-NNNNNN.png`` and TensorBoard image ``<prefix>/grid``.

Several processes split the samples (sample ``i`` on rank ``i mod W``) and rank 0 gathers and writes; every
rank must call :meth:`Validator.run` at the same steps.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rawsynth.io.atomic import atomic_output

from ..errors import ConfigError, DataError, WeightsError
from .distributed import DistEnv, _all_gather
from .val_config import ValidationConfig

__all__ = ["psnr", "ssim", "ValSource", "val_sources", "iter_samples", "Validator", "build_validator", "render_grid",
           "lpips_folder_candidates"]


# ------------------------------------------------------------------------------------------------ metrics


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-sample PSNR (dB) of ``(B, C, H, W)`` images: ``10·log10(range² / MSE)``, the MSE over every channel and
    pixel, in float64. Identical images give ``inf``."""
    d = pred.double() - target.double()
    mse = d.pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_1d(sigma: float = 1.5, radius: int = 5, device=None) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-sample SSIM of ``(B, C, H, W)`` images (``H, W >= 11``), in float64: Gaussian window of 11 taps
    (σ = 1.5), ``C1 = (0.01·range)²``, ``C2 = (0.03·range)²``, population (co)variances, the SSIM map averaged
    over its valid region (5 pixels in from every border) and over the channels — skimage's
    ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``."""
    x, y = pred.double(), target.double()
    b, c, h, w = x.shape
    if h < 11 or w < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels, got {h}x{w}")
    g = _gaussian_1d(device=x.device)
    gh, gw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)  # separable, 'valid'

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(1)


# --------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ValSource:
    """One set of held-out samples: ``kind`` ``shards`` (paths) or ``benchmark`` (a folder); records are keyed
    ``<prefix>/<metric>``."""

    kind: str
    prefix: str
    paths: tuple[str, ...]


def val_sources(cfg: ValidationConfig) -> list[ValSource]:
    """The sources of ``cfg``, checked before anything is written.

    Raises:
        ConfigError: neither ``shards`` nor ``benchmark`` is set.
        DataError: missing shards, or a benchmark folder without ``raw/`` and ``gt_linear/``.
    """
    from .streams import resolve_shards

    if not cfg.shards and cfg.benchmark is None:
        raise ConfigError("validation.shards is empty and validation.benchmark is null: nothing to validate on",
                          fix="set validation.shards (held-out `rawsynth generate` shards) or validation.benchmark "
                              "(a `python -m benchmarks build` folder), or validation: null")
    out = []
    if cfg.shards:
        out.append(ValSource("shards", "val", tuple(resolve_shards(cfg.shards, "validation.shards"))))
    if cfg.benchmark is not None:
        root = Path(cfg.benchmark)
        if not (root / "raw").is_dir() or not (root / "gt_linear").is_dir():
            raise DataError("not a benchmark folder (no raw/ and gt_linear/)", path=root,
                            fix="point validation.benchmark at the --out folder of `python -m benchmarks build`")
        if not _benchmark_keys(root):
            raise DataError("the benchmark folder holds no raw/KEY.json with a gt_linear/KEY.png", path=root,
                            fix="rebuild it with `python -m benchmarks build`")
        out.append(ValSource("benchmark", "val_bench", (str(root),)))
    return out


def _benchmark_keys(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "raw").glob("*.json")
                  if (root / "raw" / f"{p.stem}.png").is_file() and (root / "gt_linear" / f"{p.stem}.png").is_file())


def _benchmark_sample(root: Path, key: str) -> dict:
    from rawsynth.io.png16 import read_png16
    from rawsynth.mns import Pattern, SensorParams
    from rawsynth.mns.sensor import normalize

    meta = json.loads((root / "raw" / f"{key}.json").read_text())
    try:
        sensor = SensorParams.from_dict(meta["sensor"])
        pattern = Pattern(meta["pattern"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"benchmark sample {key}: bad metadata ({e})", path=root / "raw" / f"{key}.json",
                        fix="rebuild the benchmark with `python -m benchmarks build`") from None
    dn = torch.from_numpy(read_png16(root / "raw" / f"{key}.png").astype(np.int32))[None, None]
    raw = normalize(dn, sensor, clip=False, dtype=torch.float32)[0]
    gt = read_png16(root / "gt_linear" / f"{key}.png")
    hq = torch.from_numpy(gt.astype(np.float32) / 65535.0).permute(2, 0, 1).contiguous()
    if hq.shape[1:] != raw.shape[1:]:
        raise DataError(f"benchmark sample {key}: gt_linear {tuple(hq.shape[1:])} differs from raw "
                        f"{tuple(raw.shape[1:])}", path=root, fix="rebuild the benchmark")
    return {"key": key, "raw": raw, "hq": hq, "pattern": pattern, "meta": meta}


def _centre_crop(sample: dict, crop: int | None) -> dict:
    if crop is None:
        return sample
    from rawsynth.data import apply_crop_flip

    h, w = sample["raw"].shape[1:]
    if crop > min(h, w):
        raise DataError(f"validation sample {sample.get('key')} is {h}x{w}, smaller than validation.crop {crop}",
                        fix="lower validation.crop (or set it to null)")
    top, left = (h - crop) // 2 // 2 * 2, (w - crop) // 2 // 2 * 2
    return apply_crop_flip(sample, top, left, crop, crop)


def iter_samples(source: ValSource, cfg: ValidationConfig, handler: str = "warn",
                 verify: bool = True) -> Iterator[dict]:
    """The first ``cfg.max_samples`` samples of ``source`` in a fixed order (:func:`rawsynth.data.decode_pair`
    format), centre-cropped to ``cfg.crop``."""
    n = 0
    if source.kind == "benchmark":
        root = Path(source.paths[0])
        for key in _benchmark_keys(root)[:cfg.max_samples]:
            yield _centre_crop(_benchmark_sample(root, key), cfg.crop)
        return
    from rawsynth.data import make_dataset

    ds = make_dataset(list(source.paths), crop=None, flips=False, shuffle=0, split_by_node=False,
                      split_by_worker=False, handler=handler, verify=verify)
    ds.set_epoch(0)
    for sample in ds:
        yield _centre_crop(sample, cfg.crop)
        n += 1
        if n >= cfg.max_samples:
            return


# --------------------------------------------------------------------------------------------------- grid


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in ``[0, 1]`` → ``(H, W, 3)`` uint8 (clipped, rounded half to even)."""
    return torch.round(x.detach().float().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def raw_view(raw: torch.Tensor) -> torch.Tensor:
    """A ``(1, H, W)`` normalised mosaic as a ``(3, H, W)`` grey image with gamma 1/2.2 (for the grid)."""
    return raw.float().clamp(0, 1).pow(1 / 2.2).expand(3, -1, -1)


def render_grid(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Tile ``rows`` of ``(h, w, 3)`` uint8 images into one ``(H, W, 3)`` image, each cell the size of the largest
    tile (smaller tiles top-left, black around them), no gaps."""
    th = max(t.shape[0] for r in rows for t in r)
    tw = max(t.shape[1] for r in rows for t in r)
    cols = max(len(r) for r in rows)
    out = np.zeros((th * len(rows), tw * cols, 3), np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            out[i * th:i * th + t.shape[0], j * tw:j * tw + t.shape[1]] = t
    return out


# ---------------------------------------------------------------------------------------------- validator


def lpips_folder_candidates(cfg: ValidationConfig, stage_folder: str | None) -> list[Path]:
    """Where LPIPS weights are looked for, in order: ``validation.lpips_weights``; else the stage's
    ``loss.lpips_weights``, ``$RAWSYNTH_WEIGHTS_DIR``, ``$TORCH_HOME``, ``~/.cache/torch`` (the benchmarks'
    weights folder convention, :mod:`rddm.lpips` searches its ``hub/`` subfolders)."""
    if cfg.lpips_weights is not None:
        return [Path(cfg.lpips_weights)]
    out = [Path(stage_folder)] if stage_folder else []
    for var in ("RAWSYNTH_WEIGHTS_DIR", "TORCH_HOME"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]))
    out.append(Path(os.path.expanduser("~/.cache/torch")))
    return out


class Validator:
    """Runs validations for one stage (build it with :func:`build_validator`).

    Args:
        cfg: the ``validation`` section.
        stage: the stage's name (messages).
        env: this process.
        out: the run folder (grids go to ``out/validation/``).
        lpips_folder: the stage's ``loss.lpips_weights`` (a fallback, see :func:`lpips_folder_candidates`).
        show_raw: put the RAW mosaic in the grid's first column (stages that read RAW).
        handler, verify: the shard reader's corrupt-sample handling (``data.handler``, ``data.verify``).
    """

    def __init__(self, cfg: ValidationConfig, stage: str, env: DistEnv, out: str | os.PathLike,
                 lpips_folder: str | None = None, show_raw: bool = True, handler: str = "warn", verify: bool = True):
        self.cfg, self.stage, self.env, self.out = cfg, stage, env, Path(out)
        self.show_raw, self.handler, self.verify = show_raw, handler, verify
        self.sources = val_sources(cfg)
        self.lpips = None
        self.notes: list[str] = []
        if cfg.lpips:
            tried = []
            for folder in lpips_folder_candidates(cfg, lpips_folder):
                try:
                    from ..lpips import LPIPS

                    self.lpips = LPIPS.from_folder(folder, cfg.lpips_net).to(env.device).eval().requires_grad_(False)
                    break
                except WeightsError as e:
                    tried.append(f"{folder}: {e.message}")
            if self.lpips is None:
                self.notes.append(f"validation: LPIPS-{cfg.lpips_net} skipped, no weights found ("
                                  + "; ".join(tried) + "); set validation.lpips_weights, or validation.lpips: false")
                if env.is_main:
                    warnings.warn(self.notes[-1], RuntimeWarning, stacklevel=2)

    def due(self, step: int, max_steps: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is a validation step: every ``every`` and the last."""
        return step % self.cfg.every == 0 or step == max_steps

    @torch.no_grad()
    def _evaluate(self, source: ValSource, predict: Callable[[dict], torch.Tensor]) -> tuple[list, dict]:
        """This rank's per-sample metrics ``[(index, {name: value})]`` and grid rows ``{index: [tiles]}``."""
        from ..losses import isp_from_meta, to_srgb
        from rawsynth.data import collate

        env, cfg = self.env, self.cfg
        rows, tiles = [], {}
        pending: list[tuple[int, dict]] = []

        def flush():
            if not pending:
                return
            idx = [i for i, _ in pending]
            batch = collate([s for _, s in pending])
            pending.clear()
            pred = predict(batch).float()
            hq = batch["hq"].to(env.device).float()
            pred_l, hq_l = pred.clamp(0, 1), hq.clamp(0, 1)
            isp = isp_from_meta(batch["meta"], device=env.device)
            pred_s, hq_s = to_srgb(pred, isp).clamp(0, 1), to_srgb(hq, isp).clamp(0, 1)
            vals = {"linear_psnr": psnr(pred_l, hq_l), "linear_ssim": ssim(pred_l, hq_l),
                    "srgb_psnr": psnr(pred_s, hq_s), "srgb_ssim": ssim(pred_s, hq_s)}
            if self.lpips is not None:
                vals["srgb_lpips"] = self.lpips(pred_s, hq_s, normalize=True).double()
            for k, i in enumerate(idx):
                rows.append((i, {n: float(v[k]) for n, v in vals.items()}))
                if i < cfg.grid_samples:
                    row = [_to_u8(raw_view(batch["raw"][k]))] if self.show_raw else []
                    tiles[i] = row + [_to_u8(pred_s[k]), _to_u8(hq_s[k])]

        for i, sample in enumerate(iter_samples(source, cfg, self.handler, self.verify)):
            if i % env.world_size != env.rank:
                continue
            if pending and pending[0][1]["raw"].shape != sample["raw"].shape:
                flush()
            pending.append((i, sample))
            if len(pending) >= cfg.batch_size:
                flush()
        flush()
        return rows, tiles

    def run(self, step: int, predict: Callable[[dict], torch.Tensor], modules: Sequence[nn.Module],
            logger=None) -> dict[str, dict]:
        """Validate at ``step`` (collective): ``modules`` are put in eval mode for ``predict`` and back afterwards.

        Args:
            step: optimizer steps done.
            predict: batch (:func:`rawsynth.data.collate` format, on the CPU) → ``(B, 3, H, W)`` linear RGB on
                this rank's device.
            modules: the networks ``predict`` runs (their train/eval mode is restored afterwards).
            logger: the stage's :class:`~rddm.train.logger.TrainLogger` (``metrics.jsonl``, TensorBoard), or
                ``None``.

        Returns:
            On rank 0: ``{prefix: record}`` (the ``metrics.jsonl`` records without ``step``); on the others ``{}``.

        Raises:
            DataError: a source gives no sample.
        """
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        out = {}
        try:
            for source in self.sources:
                t0 = time.time()
                rows, tiles = self._evaluate(source, predict)
                gathered = _all_gather(self.env, (rows, tiles))
                if not any(g[0] for g in gathered):  # decided on every rank alike
                    raise DataError(f"validation ({source.kind}) gave no sample", path=source.paths[0],
                                    fix="check validation.shards / validation.benchmark (see the warnings above "
                                        "for skipped samples)")
                if not self.env.is_main:
                    continue
                rows = sorted((r for g in gathered for r in g[0]), key=lambda r: r[0])
                tiles = {k: v for g in gathered for k, v in g[1].items()}
                names = sorted(rows[0][1])
                record = {f"{source.prefix}/{n}": float(np.mean([r[1][n] for r in rows])) for n in names}
                record[f"{source.prefix}/samples"] = float(len(rows))
                record[f"{source.prefix}/seconds"] = round(time.time() - t0, 3)
                grid = render_grid([tiles[i] for i in sorted(tiles)]) if tiles else None
                self._write(step, source.prefix, record, grid, logger)
                out[source.prefix] = record
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return out

    def _write(self, step: int, prefix: str, record: dict, grid: np.ndarray | None, logger) -> None:
        if grid is not None:
            from rawsynth.io.png16 import encode_png8

            path = self.out / "validation" / f"{prefix}-step-{step:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                Path(tmp).write_bytes(encode_png8(grid))
        if logger is None:
            return
        with open(logger.metrics, "a") as f:
            f.write(json.dumps({"step": step, **record}, sort_keys=True) + "\n")
        tb = getattr(logger, "tb", None)
        if tb is not None:
            for k, v in record.items():
                tb.add_scalar(k, v, step)
            if grid is not None:
                tb.add_image(f"{prefix}/grid", grid, step, dataformats="HWC")


def build_validator(cfg: ValidationConfig | None, stage: str, env: DistEnv, out, *, lpips_folder: str | None = None,
                    show_raw: bool = True, data=None) -> Validator | None:
    """A :class:`Validator` for the stage (``None`` when ``cfg`` is ``None``); ``data`` is the stage's
    ``DataConfig`` (its ``handler`` and ``verify`` apply to the validation shards too)."""
    if cfg is None:
        return None
    kw = {} if data is None else {"handler": data.handler, "verify": data.verify}
    return Validator(cfg, stage, env, out, lpips_folder=lpips_folder, show_raw=show_raw, **kw)
