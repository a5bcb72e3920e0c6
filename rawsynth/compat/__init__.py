"""Adapters to third-party packages that need help to import (see :mod:`rawsynth.compat.basicsr`).
See ``docs/degrade.md``."""
