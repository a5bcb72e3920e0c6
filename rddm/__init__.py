"""RDDM — RAW-domain one-step diffusion restorer (built in later issues; see docs/)."""

from rawsynth._version import __version__

__all__ = ["__version__"]
