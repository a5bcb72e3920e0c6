"""Shared fixtures: real photos from scikit-image as batched tensors."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from rawsynth.errors import InputError

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photo(name: str, size: int | None = 256) -> torch.Tensor:
    """``(1, 3, H, W)`` float32 ``[0, 1]`` crop (top-left ``size``², even) of a skimage.data photo."""
    a = getattr(skimage.data, name)()
    if size is not None:
        a = a[:size, :size]
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return torch.from_numpy(np.ascontiguousarray(a[:h, :w])).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """``(4, 3, 256, 256)`` batch of four real photos."""
    return torch.cat([photo(n) for n in PHOTOS])


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def photo_sources(d: Path) -> Path:
    """Three 160x200 PNG crops of scikit-image photos written into ``d`` (a generate source folder)."""
    import cv2
    import skimage.data

    for name in ("astronaut", "chelsea", "coffee"):
        cv2.imwrite(str(d / f"{name}.png"), cv2.cvtColor(getattr(skimage.data, name)()[:160, :200], cv2.COLOR_RGB2BGR))
    return d


def shard_tree(d: Path) -> dict:
    """What a ``rawsynth generate`` output folder holds, for exact comparisons of two runs: every shard's bytes,
    the manifest, and the stats without their timing."""
    out = {p.name: p.read_bytes() for p in sorted(d.glob("shard-*.tar"))}
    out["manifest.json"] = json.loads((d / "manifest.json").read_text())
    for p in sorted(d.glob("*.stats.json")):
        stats = json.loads(p.read_text())
        stats.pop("seconds")
        out[p.name] = stats
    return out


def kill_after_shards(proc, out: Path, n: int) -> None:
    """SIGKILL the ``rawsynth generate`` process ``proc`` once ``n`` shards of ``out`` are done; the manifest must
    then say the run is incomplete."""
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < n:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not json.loads((out / "manifest.json").read_text())["complete"]


def input_error(fn, *args, **kwargs):
    """The :class:`~rawsynth.errors.InputError` that ``fn(*args, **kwargs)`` raises (the test fails if none)."""
    with pytest.raises(InputError) as e:
        fn(*args, **kwargs)
    return e.value
