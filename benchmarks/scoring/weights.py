"""Where pyiqa's weight files live, which ones each metric needs, and a guard that keeps pyiqa offline.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from rawsynth.errors import ConfigError

from ..errors import DownloadRefusedError, MissingDependencyError, MissingWeightsError, UnsafeWeightsError
from ..files import sha256_file

__all__ = ["ENV_VAR", "WeightFile", "WeightStatus", "WeightsReport", "resolve_weights_dir", "required_weights",
           "check_weights", "check_loadable", "offline_hub", "import_clip", "download_weights"]

#: Environment variable naming the weights folder (a ``TORCH_HOME``).
ENV_VAR = "RAWSYNTH_WEIGHTS_DIR"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's convention: NAME-<sha256 prefix>.EXT


@dataclass(frozen=True)
class WeightFile:
    """One file a metric needs.

    Attributes:
        metric: our metric name.
        relpath: path under the weights folder, e.g. ``hub/pyiqa/DISTS_weights-f5e65c96.pth``.
        url: where pyiqa / torchvision / CLIP download it from.
        sha256: the full SHA-256 when it is published (CLIP), else ``None``.
    """

    metric: str
    relpath: str
    url: str
    sha256: str | None = None

    @property
    def name(self) -> str:
        return Path(self.relpath).name

    @property
    def sha256_prefix(self) -> str | None:
        """The published SHA-256 (prefix): CLIP's full hash, or the prefix torchvision's file names carry
        (``alexnet-owt-7be5be79.pth``, checked by torch.hub on download). ``None`` for pyiqa's own files, whose
        name suffixes are not documented as SHA-256 prefixes."""
        if self.sha256:
            return self.sha256
        m = _HASH_IN_NAME.search(self.name)
        return m.group(1) if m and urlparse(self.url).netloc == "download.pytorch.org" else None


@dataclass(frozen=True)
class WeightStatus:
    """``file``'s state: ``present`` and, after verification, ``verified`` (``True``/``False``/``None`` =
    not checked or no published hash)."""

    file: WeightFile
    path: Path
    present: bool
    size: int | None = None
    verified: bool | None = None

    def to_dict(self) -> dict:
        return {"metric": self.file.metric, "path": str(self.path), "present": self.present, "size": self.size,
                "verified": self.verified, "url": self.file.url}


@dataclass
class WeightsReport:
    """:func:`check_weights`' answer: every file with its status."""

    weights_dir: Path
    files: list[WeightStatus] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[WeightFile]:
        return [s.file for s in self.files if not s.present]

    @property
    def ok(self) -> bool:
        return not self.missing

    def text(self) -> str:
        lines = [f"weights folder: {self.weights_dir}"]
        for s in self.files:
            state = "present" if s.present else "MISSING"
            if s.verified is True:
                state += ", sha256 verified"
            elif s.verified is False:
                state += ", sha256 MISMATCH (not the published file: scores will not be comparable)"
            lines.append(f"  {s.file.metric:8s} {state:9s} {s.path}")
            if not s.present:
                lines.append(f"  {'':8s} {'':9s} download: {s.file.url}")
        if not self.files:
            lines.append("  (the chosen metrics need no weight files)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """``weights_dir``, else ``$RAWSYNTH_WEIGHTS_DIR``, else ``$TORCH_HOME``, else torch's default home."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    for var in (ENV_VAR, "TORCH_HOME"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    import torch.hub

    return Path(torch.hub._get_torch_home())


def _pyiqa_default_opts(pyiqa_name: str) -> dict:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return dict(DEFAULT_CONFIGS[pyiqa_name]["metric_opts"])


def _expect(metric: str, opts: dict, **expected) -> None:
    for k, v in expected.items():
        if opts.get(k, v) != v:
            raise ConfigError(f"the installed pyiqa changed metric {metric!r}'s default {k}={opts.get(k)!r} "
                              f"(expected {v!r}); update benchmarks/scoring/weights.py and metrics.py")


def _basename(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def required_weights(metrics: Iterable[str]) -> list[WeightFile]:
    """The weight files ``metrics`` (our names, :data:`benchmarks.scoring.metrics.METRICS`) need, taken from the
    installed pyiqa and torchvision. PSNR and SSIM need none."""
    out: list[WeightFile] = []
    for m in metrics:
        if m in ("psnr", "ssim", "psnr_y", "ssim_y"):
            continue
        elif m == "lpips":
            from pyiqa.archs.lpips_arch import default_model_urls
            from torchvision.models import AlexNet_Weights

            opts = _pyiqa_default_opts("lpips")
            _expect(m, opts, net="alex", version="0.1")
            out += [WeightFile(m, f"hub/checkpoints/{_basename(AlexNet_Weights.IMAGENET1K_V1.url)}",
                               AlexNet_Weights.IMAGENET1K_V1.url),
                    WeightFile(m, f"hub/pyiqa/{_basename(default_model_urls['0.1_alex'])}",
                               default_model_urls["0.1_alex"])]
        elif m == "dists":
            from pyiqa.archs.dists_arch import default_model_urls
            from torchvision.models import VGG16_Weights

            out += [WeightFile(m, f"hub/checkpoints/{_basename(VGG16_Weights.IMAGENET1K_V1.url)}",
                               VGG16_Weights.IMAGENET1K_V1.url),
                    WeightFile(m, f"hub/pyiqa/{_basename(default_model_urls['url'])}", default_model_urls["url"])]
        elif m == "fid":
            from pyiqa.archs.inception import FID_WEIGHTS_URL

            _expect(m, _pyiqa_default_opts("fid"), backbone="inceptionv3")
            out.append(WeightFile(m, f"hub/pyiqa/{_basename(FID_WEIGHTS_URL)}", FID_WEIGHTS_URL))
        elif m == "niqe":
            from pyiqa.archs.niqe_arch import default_model_urls

            _expect(m, _pyiqa_default_opts("niqe"), version="original")
            out.append(WeightFile(m, f"hub/pyiqa/{_basename(default_model_urls['url'])}", default_model_urls["url"]))
        elif m == "musiq":
            from pyiqa.archs.musiq_arch import default_model_urls

            _expect(m, _pyiqa_default_opts("musiq"), pretrained="koniq10k")
            url = default_model_urls["koniq10k"]
            out.append(WeightFile(m, f"hub/pyiqa/{_basename(url)}", url))
        elif m == "clipiqa":
            from pyiqa.archs.clip_model import _MODELS

            _expect(m, _pyiqa_default_opts("clipiqa"), backbone="RN50", model_type="clipiqa")
            url = _MODELS["RN50"]
            out.append(WeightFile(m, f"hub/clip/{_basename(url)}", url, sha256=url.split("/")[-2]))
        else:
            raise ConfigError(f"unknown metric {m!r}")
    return out


def check_weights(metrics: Iterable[str], weights_dir: str | os.PathLike | None = None,
                  verify: bool = False) -> WeightsReport:
    """Which of the files ``metrics`` need are in the weights folder (nothing is downloaded or loaded).

    Args:
        metrics: our metric names.
        weights_dir: see :func:`resolve_weights_dir`.
        verify: also hash every present file and compare with its published SHA-256 (prefix).
    """
    root = resolve_weights_dir(weights_dir)
    metrics = list(metrics)
    report = WeightsReport(root)
    for w in required_weights(metrics):
        p = root / w.relpath
        present = p.is_file()
        verified = None
        if present and verify and w.sha256_prefix:
            verified = sha256_file(p).startswith(w.sha256_prefix)
        report.files.append(WeightStatus(w, p, present, p.stat().st_size if present else None, verified))
    if "clipiqa" in metrics:
        try:
            import_clip()
        except MissingDependencyError as e:
            report.notes.append(str(e))
    return report


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``): a zip with a ``code/`` folder, read by TorchScript's own
    loader, which runs no Python pickle code."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_loadable(path: str | os.PathLike) -> None:
    """Refuse a weight file that is not plain data: ``torch.load(path, weights_only=True)`` must read it (or it is
    a TorchScript archive, as OpenAI's CLIP ``RN50.pt``, or a MATLAB ``.mat`` read by scipy).

    Raises:
        UnsafeWeightsError: the restricted unpickler refuses the file (it names a global that is not a tensor
            type: loading it with ``weights_only=False``, as pyiqa does, could run code).
    """
    import torch

    path = Path(path)
    if path.suffix.lower() == ".mat" or _is_torchscript(path):
        return
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as e:  # noqa: BLE001 - every refusal is reported the same way
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeWeightsError(path, f"torch.load(weights_only=True): {first[:200]}") from None


def require_weights(metrics: Iterable[str], weights_dir: str | os.PathLike | None = None,
                    verify: bool = False) -> WeightsReport:
    """:func:`check_weights`, raising :class:`MissingWeightsError` (listing every missing file) if any is absent,
    :class:`UnsafeWeightsError` if one is not plain weights (:func:`check_loadable`, run on every file before
    pyiqa sees it) and :class:`MissingDependencyError` if the ``clip`` package cannot be imported for CLIP-IQA."""
    report = check_weights(metrics, weights_dir, verify)
    if report.missing:
        raise MissingWeightsError(
            report.weights_dir, report.missing,
            "copy these files there (same names; `python -m benchmarks weights --download --weights-dir DIR` "
            "on a machine with internet fetches them), point --weights-dir / $RAWSYNTH_WEIGHTS_DIR at the folder "
            "that has them, or pass --allow-download")
    if report.notes:
        raise MissingDependencyError(report.notes[0])
    for st in report.files:
        check_loadable(st.path)
    return report


def import_clip():
    """Import OpenAI's ``clip`` package (CLIP-IQA's text tokenizer; its BPE vocabulary ships inside the package).

    openai-clip 1.0.1 does ``from pkg_resources import packaging`` (for a torch version check), and setuptools
    >= 81 no longer ships ``pkg_resources``. When it is missing, a stand-in holding only ``packaging`` is put in
    ``sys.modules`` for the duration of the import and removed again, so nothing else sees it.

    Raises:
        MissingDependencyError: ``clip`` is not installed or fails to import.
    """
    if "clip" in sys.modules:
        return sys.modules["clip"]
    shim = None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        shim = sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        shim.packaging = packaging
    try:
        import clip
    except ImportError as e:
        raise MissingDependencyError(f"CLIP-IQA needs OpenAI's clip package (pip install openai-clip; pyiqa "
                                     f"depends on it): {type(e).__name__}: {e}") from None
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return clip


@contextmanager
def offline_hub(weights_dir: str | os.PathLike | None = None, allow_download: bool = False) -> Iterator[Path]:
    """Point pyiqa and torch.hub at the weights folder; unless ``allow_download``, refuse every download.

    Inside the block ``torch.hub.get_dir()`` is ``WEIGHTS/hub`` and pyiqa's cache ``WEIGHTS/hub/pyiqa``; the
    download functions of torch.hub, pyiqa and pyiqa's CLIP loader raise
    :class:`~benchmarks.errors.DownloadRefusedError`; and ``torch.load`` runs with ``weights_only=True`` whatever
    its caller asks (pyiqa asks for ``False``), so no pickle code runs. Everything is restored on exit.
    """
    import torch
    import torch.hub

    import pyiqa.archs.clip_model as clip_model
    import pyiqa.utils.download_util as du

    root = resolve_weights_dir(weights_dir)
    hub = root / "hub"
    saved_hub = torch.hub._hub_dir  # private, but the only way to restore a previous set_dir()
    saved = [(du, "DEFAULT_CACHE_DIR", du.DEFAULT_CACHE_DIR)]
    torch.hub.set_dir(str(hub))
    du.DEFAULT_CACHE_DIR = str(hub / "pyiqa")
    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    saved.append((torch, "load", real_load))
    torch.load = weights_only_load
    if not allow_download:
        def refuse(url, dst="", *args, **kwargs):
            raise DownloadRefusedError(str(url), str(dst))

        for mod, name in ((torch.hub, "download_url_to_file"), (du, "download_url_to_file"),
                          (du, "download_file_from_google_drive"), (clip_model, "_download")):
            saved.append((mod, name, getattr(mod, name)))
            setattr(mod, name, refuse)
    try:
        yield root
    finally:
        torch.hub._hub_dir = saved_hub
        for mod, name, value in reversed(saved):
            setattr(mod, name, value)


def download_weights(metrics: Iterable[str], weights_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> WeightsReport:
    """Fetch the missing files ``metrics`` need into the weights folder (the only function here that goes online),
    then check them (SHA-256 verified where published)."""
    import torch.hub

    metrics = list(metrics)
    report = check_weights(metrics, weights_dir)
    for w in report.missing:
        dst = report.weights_dir / w.relpath
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url, str(dst), hash_prefix=w.sha256_prefix, progress=progress)
    return check_weights(metrics, weights_dir, verify=True)
