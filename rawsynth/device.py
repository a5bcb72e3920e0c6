"""The one device resolver of every command line: ``--device auto|cpu|cuda|cuda:N``.
See ``docs/architecture.md``."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # torch is imported when a device is resolved (the CLIs' --help stays fast)
    import torch

__all__ = ["DEVICE_HELP", "check_device", "device_arg", "resolve_device"]

DEVICE_HELP = "auto (default: CUDA when available), cpu, cuda or cuda:N"
_SPELLING = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(spec) -> str:
    """``spec`` as a device string, or :class:`ConfigError` unless it is ``auto``, ``cpu``, ``cuda`` or
    ``cuda:N`` (a ``torch.device`` is accepted as its string)."""
    text = "auto" if spec is None else str(spec)
    if not _SPELLING.fullmatch(text):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}", fix="use one of those")
    return text


def device_arg(text: str) -> str:
    """``argparse`` type of ``--device`` (a bad spelling is a usage error, exit 2)."""
    try:
        return check_device(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` of ``spec``.

    Args:
        spec: ``auto``/``None`` (``cuda`` when available, else ``cpu``), ``cpu``, ``cuda``, ``cuda:N`` or a
            ``torch.device``.
        local_rank: with several processes on a node, ``auto``/``cuda`` pick ``cuda:(local_rank % GPUs)``.

    Raises:
        ConfigError: a bad spelling, or CUDA asked for but not available.
    """
    import torch

    text = check_device(spec)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine", fix="use --device cpu (or auto)")
    if text == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(text)
