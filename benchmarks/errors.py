"""Typed errors of the benchmark tools (the project's one error contract: message, path, fix).
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os

from rawsynth.errors import RawsynthError

__all__ = ["BenchmarkError", "LayoutError", "PairingError", "MissingWeightsError", "DownloadRefusedError",
           "MissingDependencyError", "CommandError", "UnsafeWeightsError"]


class BenchmarkError(RawsynthError):
    """A benchmark folder, prediction folder or run cannot be used as it is."""


class LayoutError(BenchmarkError):
    """A source folder is not (or not all of) the official dataset layout the builder expects.

    Attributes:
        path: the folder given.
        missing: expected files that are absent (paths relative to the dataset root).
    """

    def __init__(self, message: str = "", *, path: str | os.PathLike | None = None, missing: list[str] | None = None,
                 fix: str | None = None):
        self.missing = list(missing or [])
        super().__init__(message, path=path, fix=fix)


class PairingError(BenchmarkError):
    """Predictions cannot be paired one-to-one with a benchmark's images.

    Attributes:
        missing: benchmark keys without a prediction.
        extra: prediction files that match no key.
        duplicates: ``{key: [files]}`` for keys matched by more than one file.
        wrong_size: ``{file: "HxW, expected HxW"}``.
        unreadable: ``{file: reason}``.
    """

    def __init__(self, pred_dir: str | os.PathLike, missing=(), extra=(), duplicates=None, wrong_size=None,
                 unreadable=None, hint: str = ""):
        self.pred_dir = os.fspath(pred_dir)
        self.missing, self.extra = list(missing), list(extra)
        self.duplicates, self.wrong_size = dict(duplicates or {}), dict(wrong_size or {})
        self.unreadable = dict(unreadable or {})
        lines = [f"{self.pred_dir}: predictions do not pair one-to-one with the benchmark:"]
        if self.missing:
            lines.append(f"  {len(self.missing)} missing (no file for key): {_short(self.missing)}")
        if self.extra:
            lines.append(f"  {len(self.extra)} extra (file matches no key): {_short(self.extra)}")
        for key, files in self.duplicates.items():
            lines.append(f"  duplicate for key {key}: {', '.join(files)}")
        for f, why in self.wrong_size.items():
            lines.append(f"  wrong size: {f}: {why}")
        for f, why in self.unreadable.items():
            lines.append(f"  unreadable: {f}: {why}")
        if hint:
            lines.append(f"  fix: {hint}")
        super().__init__("\n".join(lines))


class MissingWeightsError(BenchmarkError):
    """Weight files the chosen metrics need are not in the weights folder (nothing was downloaded).

    Attributes:
        missing: the :class:`benchmarks.scoring.weights.WeightFile` entries that are absent.
        weights_dir: the folder searched.
    """

    def __init__(self, weights_dir: str | os.PathLike, missing: list, hint: str):
        self.weights_dir = os.fspath(weights_dir)
        self.missing = list(missing)
        lines = [f"{self.weights_dir}: {len(self.missing)} weight file(s) missing for the chosen metrics "
                 "(nothing was downloaded):"]
        lines += [f"  {w.metric}: {os.path.join(self.weights_dir, w.relpath)}  (from {w.url})" for w in self.missing]
        lines.append(f"  fix: {hint}")
        super().__init__("\n".join(lines))


class DownloadRefusedError(BenchmarkError):
    """Something tried to download a file while downloads are off."""

    def __init__(self, url: str, dst: str = ""):
        self.url, self.dst = url, dst
        where = f" to {dst}" if dst else ""
        super().__init__(f"refused to download {url}{where}: downloads are off. Put the file there yourself "
                         "(see `python -m benchmarks weights`) or pass --allow-download")


class UnsafeWeightsError(BenchmarkError):
    """A weight file is not plain tensors: ``torch.load(..., weights_only=True)`` refuses it (a pickle that would
    run code), so it is not handed to pyiqa.

    Attributes:
        path: the file.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: refused: not a plain weights file ({reason}); loading it could run code. "
                         "Replace it with the published file (`python -m benchmarks weights --verify` checks the "
                         "published SHA-256 where there is one)")


class MissingDependencyError(BenchmarkError):
    """An optional package or program needed for the requested option is not available."""


class CommandError(BenchmarkError):
    """A third-party command run by ``python -m benchmarks run`` failed."""


def _short(items: list[str], n: int = 20) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", … (+{len(items) - n} more)" if len(items) > n else "")
