"""Inference: ``rddm restore INPUT... --model DIR --out DIR`` (RAW files of any size → sRGB PNG).
See ``docs/rddm.md``."""

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
