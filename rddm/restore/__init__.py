"""Inference: ``rddm restore INPUT... --model DIR --out DIR`` (RAW files of any size → sRGB PNG).

* :mod:`rddm.restore.inputs` — DNG / camera RAW (rawpy), rawsynth shards, 16-bit PNG mosaics + JSON.
* :mod:`rddm.restore.tiling` — overlapping tiles with feathered blending, model-agnostic.
* :mod:`rddm.restore.restorer` — :class:`~rddm.restore.restorer.Restorer`: pad, tiled encoder / UNet / decoder.
* :mod:`rddm.restore.groupnorm` — GroupNorm statistics shared by all tiles (recorded on a downscaled copy).
* :mod:`rddm.restore.outputs` — PTP with the file's own parameters, 8/16-bit PNG, linear PNG/TIFF, atomic writes.
* :mod:`rddm.restore.run` — :class:`~rddm.restore.run.RestorePipeline` (model + prompt on a device) and
  :func:`~rddm.restore.run.restore_files` (the file loop behind the command).

Names are imported on first use (torch and diffusers load then).
"""

from __future__ import annotations

from rawsynth._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from .groupnorm import record_groupnorm_stats, use_groupnorm_stats
    from .inputs import RawInput, find_inputs, read_source
    from .outputs import write_linear, write_srgb
    from .restorer import Restorer
    from .run import RestoreOptions, RestorePipeline, RestoreReport, restore_files
    from .tiling import Tiling, tiled_apply

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "RawInput": "inputs", "find_inputs": "inputs", "read_source": "inputs",
    "Tiling": "tiling", "tiled_apply": "tiling",
    "Restorer": "restorer",
    "record_groupnorm_stats": "groupnorm", "use_groupnorm_stats": "groupnorm",
    "write_srgb": "outputs", "write_linear": "outputs",
    "RestorePipeline": "run", "RestoreOptions": "run", "RestoreReport": "run", "restore_files": "run",
})
