"""Import the whole synthesis stack now (torch, OpenCV, basicsr's kernels, the shard writer): a worker preload.

A fresh worker otherwise spends its first shard task importing them (about 5 s of CPU). Importing this
module does it up front, and fails at worker start, not mid-run, if the environment is broken::

    dask worker tcp://HOST:8786 --nthreads 1 --preload rawsynth.backends.preload

It also works as a ``multiprocessing`` forkserver preload (each worker then forks already warm).
"""

from __future__ import annotations

import rawsynth.generate  # noqa: F401 - the pipeline, torch, numpy, OpenCV
import rawsynth.io.dng  # noqa: F401
import rawsynth.shards  # noqa: F401 - webdataset's tar writer
from rawsynth.compat.basicsr import degradations

degradations()  # basicsr and what it pulls in (scipy, scikit-image, torchvision)
