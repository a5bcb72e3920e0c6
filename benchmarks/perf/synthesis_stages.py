"""Per-stage timers for ours in :mod:`benchmarks.perf.synthesis`: perf-counter wrappers around rawsynth's stage
functions, installed for one extra run (the real code path; nothing is added to rawsynth itself).

Split out of :mod:`benchmarks.perf.synthesis`, which re-exports these names.
"""

from __future__ import annotations

import importlib
import time
from collections import defaultdict

__all__ = ["OUR_STAGES", "StageTimer", "install", "unseen_stages"]

#: Stages of ours: (stage, [(module, attribute), ...]) — the functions whose time is that stage's (exclusive
#: of any other wrapped function they call). Each function is wrapped where its caller looks it up (a module that
#: does ``from .x import f`` calls its own global ``f``). A name missing from the rawsynth being measured is
#: skipped (some are those of older versions, so the script also profiles a checkout from before the
#: optimisations or the split of ``rawsynth.generate``); a stage none of whose functions exists is an error, and
#: a stage whose functions were never called in the profiled run is reported (:func:`unseen_stages`).
OUR_STAGES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("decode", (("rawsynth.generate_job", "_load_source"), ("rawsynth.generate", "_load_source"))),
    ("crop", (("rawsynth.generate_job", "sample_crop"), ("rawsynth.generate_job", "apply_crop"),
              ("rawsynth.generate", "sample_crop"), ("rawsynth.generate", "apply_crop"))),
    ("ISP/noise sampling", (("rawsynth.pipeline", "sample_isp_params"), ("rawsynth.pipeline", "sample_noise_params"),
                            ("rawsynth.pipeline", "numpy_rng"), ("rawsynth.pipeline", "torch_generator"),
                            ("rawsynth.pipeline", "SynthConfig.profile"),
                            ("rawsynth.recipe", "sample_isp_params"), ("rawsynth.recipe", "sample_noise_params"),
                            ("rawsynth.recipe", "numpy_rng"))),
    ("degradation", (("rawsynth.pipeline", "sample_degradation"), ("rawsynth.pipeline", "_degrade_u8"),
                     ("rawsynth.recipe", "sample_degradation"), ("rawsynth.pipeline", "degrade"),
                     ("rawsynth.degrade", "sample_degradation"), ("rawsynth.degrade.ops", "apply_degradation_u8"),
                     ("rawsynth.degrade", "apply_degradation"))),
    ("IPTP", (("rawsynth.pipeline", "_srgb_to_linear"), ("rawsynth.pipeline", "srgb_to_linear_lut"),
              ("rawsynth.pipeline", "unprocess"))),
    ("MNS", (("rawsynth.pipeline", "mosaic"), ("rawsynth.pipeline", "add_noise"), ("rawsynth.pipeline", "quantize"))),
    ("encode members (npy/PNG)", (("rawsynth.shards.fields", "encode_png16"), ("rawsynth.shards.fields", "encode_png8"),
                                  ("rawsynth.shards.fields", "encode_npy"))),
    ("encode other (hq→u16, JSON, checks)", (("rawsynth.shards", "encode_sample"),)),
    ("tar write (+fsync)", (("rawsynth.shards", "write_shard"),)),
)


class StageTimer:
    """Wraps module attributes with perf-counter timers; a stage's time excludes nested wrapped calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, module: str, attr: str, stage: str) -> bool:
        """Time ``module.attr`` as ``stage``; ``False`` if there is no such module or function."""
        try:
            owner = importlib.import_module(module)
        except ModuleNotFoundError:
            return False
        *path, attr = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        if not hasattr(owner, attr):
            return False
        fn = getattr(owner, attr)
        timer = self

        def timed(*args, **kwargs):
            timer._stack.append(stage)
            timer.calls[stage] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                timer._stack.pop()
                timer.seconds[stage] += dt
                if timer._stack:
                    timer.seconds[timer._stack[-1]] -= dt

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)
        return True

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def install(timer: StageTimer) -> None:
    """Wrap every function of :data:`OUR_STAGES`; raise if a stage has none left in this rawsynth."""
    for stage, targets in OUR_STAGES:
        if not [timer.wrap(owner, attr, stage) for owner, attr in targets].count(True):
            timer.restore()
            raise AttributeError(f"benchmark out of date: none of {targets} exists (stage {stage!r})")


def unseen_stages(timer: StageTimer) -> list[str]:
    """Stages whose wrapped functions were never called in the run (the table would wrongly show 0 for them and
    count their time as "other": the wrappers are out of date with rawsynth's code)."""
    return [s for s, _ in OUR_STAGES if not timer.calls.get(s)]
