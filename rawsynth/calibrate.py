"""``rawsynth calibrate``: a sensor's physics-noise profile from its own bias and flat RAW frames (ELD's
calibration, Wei et al. TPAMI 2021 §4). See ``docs/cameras.md``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputError, UnsupportedCFAError
from .mns.physics import CalibrationPoint, CameraInfo, LogLinearLaw, PhysicsProfile

__all__ = ["IsoCalibration", "CalibrationResult", "calibrate", "fit_bias", "fit_photon_transfer", "fit_law"]

MIN_BIAS_FRAMES = 2
MIN_FLAT_LEVELS = 2
_PPCC_SAMPLES = 100_000
_SAT_FRACTION = 1e-3
_PAIR_TOLERANCE = 0.05
_SHOOT_BIAS = "shoot at least 2 (better 10+) bias frames per ISO: lens cap on, shortest exposure"
_SHOOT_FLAT = ("shoot flat pairs per ISO: an evenly lit grey card or diffuser, two frames at each of 5+ exposure "
               "levels, the brightest below ~80% of saturation")


@dataclass
class IsoCalibration:
    """One ISO's measurements (DN). ``ptc_means``/``ptc_vars`` are the photon-transfer points."""

    iso: float
    K: float
    sigma_tl: float
    tukey_lambda: float
    sigma_gauss: float
    sigma_row: float
    color_bias: tuple[float, float, float, float]
    ptc_means: np.ndarray = field(repr=False)
    ptc_vars: np.ndarray = field(repr=False)
    ptc_intercept: float = 0.0
    ppcc: float = 0.0
    n_bias: int = 0
    n_flat: int = 0


@dataclass
class CalibrationResult:
    """What :func:`calibrate` measured and wrote."""

    profile: PhysicsProfile
    per_iso: list[IsoCalibration]
    path: Path
    plots: list[Path]

    def summary(self) -> str:
        lines = [f"rawsynth calibrate: {self.profile.name!r} -> {self.path}"]
        for c in self.per_iso:
            lines.append(f"  ISO {c.iso:g}: K {c.K:.4g} DN/e-, read sigma_TL {c.sigma_tl:.4g} "
                         f"(lambda {c.tukey_lambda:+.3f}),"
                         f" gaussian {c.sigma_gauss:.4g}, row {c.sigma_row:.4g}, colour bias "
                         f"[{', '.join(f'{v:+.3f}' for v in c.color_bias)}] ({c.n_bias} bias, {c.n_flat} flat frames)")
        for name in ("sigma_tl", "sigma_gauss", "sigma_row"):
            law = getattr(self.profile, name)
            lines.append(f"  law log {name} = {law.slope:.4f} log K + {law.bias:.4f}  (spread {law.sigma:.4f})")
        lines += [f"  plot {p}" for p in self.plots]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- reading


def _iso_of_name(name: str) -> float | None:
    try:
        v = float(name)
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _group_by_iso(root: Path, what: str) -> dict[float, tuple[Path, list]]:
    """``{iso: (folder, [RawImage, ...])}`` from ``root``'s ISO subfolders (or file metadata)."""
    from .io.raw import read_raw

    hint = _SHOOT_BIAS if what == "bias" else _SHOOT_FLAT
    if not root.is_dir():
        raise InputError(root, f"no {what} folder", hint=f"give a folder with one subfolder per ISO; {hint}")
    groups: dict[float, tuple[Path, list]] = {}

    def read(folder: Path, path: Path):
        try:
            return read_raw(path)
        except UnsupportedCFAError as e:
            raise InputError(folder, "non-CFA file", detail=str(e),
                             hint="calibrate needs Bayer RAW frames (not JPEG/TIFF/linear DNG) from the camera "
                                  "itself") from None
        except InputError as e:
            raise InputError(folder, f"unreadable {what} frame", detail=str(e),
                             hint=f"remove it or shoot again in RAW; {hint}") from None

    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    loose = _files(root)
    for folder in folders + ([root] if loose else []):
        iso = _iso_of_name(folder.name) if folder is not root else None
        for path in _files(folder):
            img = read(folder, path)
            i = iso if iso is not None else img.iso
            if i is None:
                raise InputError(folder, "missing ISO",
                                 detail=f"{path.name} records no ISO and the folder is not named by one",
                                 hint=f"put the {what} frames in subfolders named by their ISO, e.g. "
                                      f"{root / '400'}")
            groups.setdefault(float(i), (folder, []))[1].append(img)
    if not groups:
        raise InputError(root, f"too few {what} frames", detail="no files", hint=hint)
    for folder, imgs in groups.values():
        shapes = {im.mosaic.shape for im in imgs}
        if len(shapes) > 1:
            raise InputError(folder, "mixed sizes", detail=f"frame sizes {sorted(shapes)}",
                             hint="shoot every frame of an ISO with the same camera and image size (RAW, no crop)")
        pats = {im.pattern for im in imgs}
        if len(pats) > 1:
            raise InputError(folder, "mixed CFA patterns", detail=str(sorted(p.value for p in pats)),
                             hint="use frames of one camera per calibration")
    return groups


def _planes(img) -> tuple[np.ndarray, np.ndarray]:
    """``(4, H/2, W/2)`` float64 planes R, G1, G2, B of a RawImage, and their black levels."""
    m = img.mosaic.astype(np.float64)
    planes = np.stack([m[r::2, c::2] for r, c in img.pattern.offsets])
    per = img.black_level_per_channel  # LibRaw's colour order R, G, B, G2
    g2 = per[3] if per[3] or not per[1] else per[1]
    black = np.array([per[0], per[1], g2, per[2]], dtype=np.float64)
    if not np.any(black):
        black[:] = img.sensor.black_level
    return planes, black


# --------------------------------------------------------------------------------------------- fits


def fit_bias(frames: list[np.ndarray], black: np.ndarray, offsets) -> dict:
    """Colour bias, row noise, Gaussian and Tukey-lambda read noise of bias frames.

    Args:
        frames: ``(H, W)`` DN mosaics of one ISO.
        black: black level per canonical colour R, G1, G2, B.
        offsets: ``(row, col)`` of R, G1, G2, B in the 2×2 block (:attr:`Pattern.offsets`).

    Returns:
        ``{"color_bias", "sigma_row", "sigma_gauss", "sigma_tl", "tukey_lambda", "ppcc"}``.
    """
    from scipy import stats

    stack = np.stack([f.astype(np.float64) for f in frames])  # (N, H, W)
    n, h, w = stack.shape
    bias = np.array([stack[:, r::2, c::2].mean() - black[i] for i, (r, c) in enumerate(offsets)])
    level = np.zeros((h, w))
    for i, (r, c) in enumerate(offsets):
        level[r::2, c::2] = black[i] + bias[i]
    resid = stack - level  # (N, H, W)
    row_means = resid.mean(axis=2, keepdims=True)
    e = resid - row_means
    var_e = e.var() * w / (w - 1)
    sigma_row = math.sqrt(max(row_means.var() - var_e / w, 0.0))
    sigma_gauss = math.sqrt(var_e)
    flat = e.ravel()
    if flat.size > _PPCC_SAMPLES:  # a deterministic spread-out subset keeps the PPCC fit to a fraction of a second
        flat = flat[np.linspace(0, flat.size - 1, _PPCC_SAMPLES).astype(np.int64)]
    lam = float(stats.ppcc_max(flat, brack=(-0.3, 0.3), dist="tukeylambda"))
    (_, _), (slope, _, r) = stats.probplot(flat, sparams=(lam,), dist="tukeylambda", fit=True)
    return {"color_bias": tuple(float(v) for v in bias), "sigma_row": sigma_row, "sigma_gauss": sigma_gauss,
            "sigma_tl": float(slope), "tukey_lambda": lam, "ppcc": float(r)}


def fit_photon_transfer(means: np.ndarray, variances: np.ndarray) -> tuple[float, float]:
    """``(K, intercept)`` of ``var = K·μ + c``, weighted by ``1/var`` (a sample variance's spread grows with it)."""
    means, variances = np.asarray(means, float), np.asarray(variances, float)
    wts = 1.0 / np.maximum(variances, 1e-12)
    k, c = np.polyfit(means, variances, 1, w=wts)
    return float(k), float(c)


def fit_law(ks, sigmas) -> LogLinearLaw:
    """``log σ = slope·log K + bias`` by least squares; ``sigma`` is the residual spread (slope 0 for one ISO)."""
    lk, ls = np.log(np.asarray(ks, float)), np.log(np.maximum(np.asarray(sigmas, float), 1e-6))
    if len(lk) < 2 or np.ptp(lk) == 0:
        return LogLinearLaw(0.0, float(ls.mean()), float(ls.std()))
    slope, bias = np.polyfit(lk, ls, 1)
    res = ls - (slope * lk + bias)
    dof = max(len(lk) - 2, 1)
    return LogLinearLaw(float(slope), float(bias), float(math.sqrt((res ** 2).sum() / dof)))


def _flat_points(folder: Path, imgs: list, black: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    white = imgs[0].sensor.white_level
    for im in imgs:
        sat = float(np.mean(im.mosaic >= white))
        if sat > _SAT_FRACTION:
            raise InputError(folder, "saturated flats", detail=f"{Path(im.path).name}: {sat:.1%} of pixels at the "
                             f"white level {white}", hint="lower the exposure; " + _SHOOT_FLAT)
    if len(imgs) < 2 * MIN_FLAT_LEVELS or len(imgs) % 2:
        raise InputError(folder, "too few flat frames", detail=f"{len(imgs)} frames; need pairs at >= "
                         f"{MIN_FLAT_LEVELS} levels", hint=_SHOOT_FLAT)
    planes = [_planes(im)[0] for im in imgs]
    order = np.argsort([p.mean() for p in planes], kind="stable")
    means, variances = [], []
    for a_i, b_i in zip(order[0::2], order[1::2]):
        a, b = planes[a_i], planes[b_i]
        ma, mb = a.mean(), b.mean()
        if abs(ma - mb) > _PAIR_TOLERANCE * max(ma, mb) + 5:
            raise InputError(folder, "unpaired flats", detail=f"{Path(imgs[a_i].path).name} and "
                             f"{Path(imgs[b_i].path).name} differ in mean ({ma:.1f} vs {mb:.1f} DN)",
                             hint="shoot exactly two frames at each exposure level; " + _SHOOT_FLAT)
        for c in range(4):
            means.append((a[c].mean() + b[c].mean()) / 2 - black[c] - bias[c])
            variances.append((a[c] - b[c]).var(ddof=1) / 2)
    means_a, vars_a = np.array(means), np.array(variances)
    levels = np.unique(np.round(means_a[0::4], -1))
    if len(levels) < MIN_FLAT_LEVELS:
        raise InputError(folder, "too few flat levels", detail=f"all pairs at ~{means_a.mean():.0f} DN",
                         hint=_SHOOT_FLAT)
    return means_a, vars_a


def _camera_info(img) -> CameraInfo:
    make, model = "unknown", "camera"
    try:
        import tifffile

        with tifffile.TiffFile(img.path) as tif:
            tags = tif.pages.first.tags
            make = str(tags[271].value).strip("\x00 ") if 271 in tags else make
            model = str(tags[272].value).strip("\x00 ") if 272 in tags else model
    except Exception:  # noqa: BLE001 - not TIFF-based: the names stay unknown
        pass
    xyz2cam = None
    if img.isp is not None:
        from .io.dng import xyz2cam_from_rgb2cam

        xyz2cam = tuple(tuple(float(v) for v in r) for r in xyz2cam_from_rgb2cam(img.isp.rgb2cam))
    s = img.sensor
    return CameraInfo(make or "unknown", model or "camera", s.bit_depth, s.black_level, s.white_level, xyz2cam,
                      f"read from {Path(img.path).name}")


# --------------------------------------------------------------------------------------------- public


def calibrate(bias_dir: str | os.PathLike, flat_dir: str | os.PathLike, out: str | os.PathLike,
              name: str | None = None, plots: bool = True) -> CalibrationResult:
    """Calibrate a sensor from bias and flat frames and write its profile JSON (and plots beside it).

    Args:
        bias_dir: ``<ISO>/`` subfolders of bias frames (>= 2 each).
        flat_dir: ``<ISO>/`` subfolders of flat pairs (>= 2 levels, two frames each); the same ISOs as ``bias_dir``.
        out: the profile JSON to write (``generate --noise-profile out`` or ``--cameras out``).
        name: profile name (default: ``"<make> <model> (calibrated)"``).
        plots: also write ``<out stem>_ptc.png`` (photon transfer) and ``<out stem>_laws.png`` (read/row laws).

    Raises:
        InputError: naming the folder at fault and what to shoot: too few frames, mixed sizes, saturated or
            unpaired flats, non-CFA files, missing ISO, ISOs present in one folder but not the other.
    """
    bias_root, flat_root, out = Path(bias_dir), Path(flat_dir), Path(out)
    biases = _group_by_iso(bias_root, "bias")
    flats = _group_by_iso(flat_root, "flat")
    for iso in sorted(set(biases) ^ set(flats)):
        where = bias_root if iso not in biases else flat_root
        raise InputError(where, "missing ISO", detail=f"ISO {iso:g} has frames in only one of bias/flat",
                         hint=f"shoot both bias frames and flat pairs at ISO {iso:g}, or remove it")
    per_iso = []
    for iso in sorted(biases):
        folder, imgs = biases[iso]
        if len(imgs) < MIN_BIAS_FRAMES:
            raise InputError(folder, "too few bias frames", detail=f"{len(imgs)} frame(s)", hint=_SHOOT_BIAS)
        _, black = _planes(imgs[0])
        b = fit_bias([im.mosaic for im in imgs], black, imgs[0].pattern.offsets)
        ffolder, fimgs = flats[iso]
        means, variances = _flat_points(ffolder, fimgs, _planes(fimgs[0])[1], np.array(b["color_bias"]))
        k, c = fit_photon_transfer(means, variances)
        if not k > 0:
            raise InputError(ffolder, "no photon transfer", detail=f"fitted K = {k:.3g}",
                             hint="the flat levels must differ in brightness; " + _SHOOT_FLAT)
        per_iso.append(IsoCalibration(iso, k, b["sigma_tl"], b["tukey_lambda"], b["sigma_gauss"], b["sigma_row"],
                                      b["color_bias"], means, variances, c, b["ppcc"], len(imgs), len(fimgs)))
    ks = [c.K for c in per_iso]
    camera = _camera_info(biases[min(biases)][1][0])
    points = tuple(CalibrationPoint(c.K, float(np.clip(c.tukey_lambda, -1, 1)), c.color_bias, c.iso,
                                    max(c.sigma_tl, 1e-6), max(c.sigma_gauss, 1e-6), max(c.sigma_row, 1e-6))
                   for c in per_iso)
    try:
        profile = PhysicsProfile(
            name=name or f"{camera.make} {camera.model} (calibrated)", k_range=(min(ks), max(ks)), points=points,
            sigma_tl=fit_law(ks, [c.sigma_tl for c in per_iso]),
            sigma_gauss=fit_law(ks, [c.sigma_gauss for c in per_iso]),
            sigma_row=fit_law(ks, [c.sigma_row for c in per_iso]), read_model="tukey", lambda_choice="nearest",
            camera=camera, description=f"calibrated by rawsynth calibrate from {bias_root} and {flat_root}",
            source="rawsynth calibrate (ELD-style: PPCC Tukey lambda, row means, photon transfer)")
    except ConfigError as e:
        raise InputError(out, "calibration out of range", detail=str(e),
                         hint="check the frames (bias: lens cap on; flats: evenly lit, unsaturated)") from None
    from .io.atomic import atomic_output

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp, open(tmp, "w") as f:
        json.dump(profile.to_dict(), f, indent=1)
        f.write("\n")
    written = _plots(out, per_iso, profile) if plots else []
    return CalibrationResult(profile, per_iso, out, written)


def _plots(out: Path, per_iso: list[IsoCalibration], profile: PhysicsProfile) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the calibration plots need matplotlib (pip install matplotlib, or the [bench] extra); "
                          f"{out} is written; rerun with --no-plots to skip them") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out.with_name(out.stem + "_ptc.png"), out.with_name(out.stem + "_laws.png")]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for c in per_iso:
        pts = ax.plot(c.ptc_means, c.ptc_vars, "o", ms=3, label=f"ISO {c.iso:g}: K = {c.K:.3g}")
        xs = np.linspace(0, c.ptc_means.max(), 50)
        ax.plot(xs, c.K * xs + c.ptc_intercept, "-", color=pts[0].get_color(), lw=1)
    ax.set(xlabel="mean signal above black (DN)", ylabel="var(a - b) / 2 (DN$^2$)", title="photon transfer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ks = np.array([c.K for c in per_iso])
    xs = np.linspace(np.log(ks.min()) - 0.2, np.log(ks.max()) + 0.2, 20)
    for name, label in (("sigma_tl", r"$\sigma_{TL}$"), ("sigma_gauss", r"$\sigma_{read}$ (Gaussian)"),
                        ("sigma_row", r"$\sigma_{row}$")):
        law = getattr(profile, name)
        pts = ax.plot(np.log(ks), np.log([max(getattr(c, name), 1e-6) for c in per_iso]), "o", label=label)
        ax.plot(xs, law.slope * xs + law.bias, "-", color=pts[0].get_color(), lw=1)
        ax.fill_between(xs, law.slope * xs + law.bias - law.sigma, law.slope * xs + law.bias + law.sigma,
                        color=pts[0].get_color(), alpha=0.15)
    ax.set(xlabel="log K", ylabel=r"log $\sigma$ (DN)", title="read and row noise laws (band: ±1 spread)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
