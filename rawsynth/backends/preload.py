"""A worker preload that imports the whole synthesis stack up front (``dask worker ... --preload
rawsynth.backends.preload``, or a forkserver preload). See ``docs/scale.md``."""

from __future__ import annotations

import rawsynth.generate  # noqa: F401 - the pipeline, torch, numpy, OpenCV
import rawsynth.io.dng  # noqa: F401
import rawsynth.shards  # noqa: F401 - webdataset's tar writer
from rawsynth.compat.basicsr import degradations

degradations()  # basicsr and what it pulls in (scipy, scikit-image, torchvision)
