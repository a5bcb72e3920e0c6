"""Repository-level pytest settings for the package doctests (``--doctest-modules`` over ``rawsynth/``): the
Triton kernel files import triton at module level, so they are not collected where triton is not installed (it
comes with torch on Linux x86-64)."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("triton") else ["rawsynth/kernels/_*_triton.py"]
