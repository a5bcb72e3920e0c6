"""The version-2 ``meta.json``: every field in every sample with one JSON type (sentinels instead of ``null``), and
the way back to version 1. See ``docs/format.md``."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources

__all__ = ["FORMAT_VERSION", "SCHEMA_FILE", "meta_schema", "stable_meta", "legacy_meta", "meta_format_version"]

#: The shard format version written by default (``format_version`` in ``manifest.json`` and each ``meta.json``).
FORMAT_VERSION = 2
#: The JSON schema (draft 2020-12) of a version-2 ``meta.json`` as ``rawsynth generate`` writes it.
SCHEMA_FILE = "meta.schema.json"

_KERNEL_FLOATS = ("sigma_x", "sigma_y", "theta", "beta", "omega_c")
_NO_KERNEL = {"kind": "none", "size": 0, **{k: 0.0 for k in _KERNEL_FLOATS}}
_NO_SOURCE = {"path": "", "sha256": "", "path_escaped": False}


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def meta_schema() -> dict:
    """The JSON schema of a version-2 ``meta.json`` (a fresh dict; validate with e.g. ``jsonschema``)."""
    return json.loads(_schema_text())


def meta_format_version(meta: dict) -> int:
    """The format version of a decoded ``meta.json``: its ``format_version``, 1 when it has none."""
    v = meta.get("format_version", 1) if isinstance(meta, dict) else 1
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def _kernel(k: dict | None) -> dict:
    if k is None:
        return dict(_NO_KERNEL)
    out = dict(k)
    for f in _KERNEL_FLOATS:
        out[f] = 0.0 if out.get(f) is None else float(out[f])
    return out


def _stage(s: dict) -> dict:
    out = dict(s, kernel=_kernel(s.get("kernel")))
    if out.get("jpeg_quality") is None:
        out["jpeg_quality"] = 0
    out["resize_scale"] = float(out["resize_scale"])
    return out


def _identity_degradation(size: list[int]) -> dict:
    stage = {"kernel": dict(_NO_KERNEL), "resize": "keep", "resize_scale": 1.0, "resize_mode": "none",
             "resize_size": list(size), "jpeg_quality": 0}
    return {"applied": False, "in_size": list(size), "scale": 1, "first": dict(stage), "second": dict(stage),
            "final": {"order": "none", "resize_mode": "none", "sinc": dict(_NO_KERNEL), "jpeg_quality": 0},
            "resize_back": False, "resize_back_mode": "none", "out_size": list(size)}


def stable_meta(meta: dict, size: tuple[int, int]) -> dict:
    """The version-2 form of ``meta`` (a new dict; ``meta`` is not changed).

    Args:
        meta: metadata as :func:`rawsynth.pipeline.recipe_meta` builds it (``null`` for absent values); keys
            this module does not know are kept as they are.
        size: ``(H, W)`` of the sample (used for the sentinels of an absent crop or degradation).

    Returns:
        ``meta`` with ``format_version = 2``, ``size``, ``noise_profile`` (``""`` when absent), and
        ``degradation``, ``source``, ``crop`` always objects of one shape (sentinels in the module docstring).
    """
    out = copy.deepcopy(meta)
    hw = [int(size[0]), int(size[1])]
    out["format_version"] = FORMAT_VERSION
    out.setdefault("size", hw)
    if out.get("noise_profile") is None:
        out["noise_profile"] = ""
    deg = out.get("degradation")
    if deg is None:
        out["degradation"] = _identity_degradation(hw)
    else:
        out["degradation"] = dict(deg, applied=True, first=_stage(deg["first"]), second=_stage(deg["second"]),
                                  final=dict(deg["final"], sinc=_kernel(deg["final"].get("sinc"))))
    src = out.get("source")
    out["source"] = dict(_NO_SOURCE) if src is None else {**_NO_SOURCE, **src}
    if out.get("crop") is None:
        out["crop"] = {"top": 0, "left": 0, "height": hw[0], "width": hw[1], "policy": "none", "pad_bottom": 0,
                       "pad_right": 0}
    return out


def _legacy_kernel(k: dict) -> dict | None:
    if k.get("kind") == "none":
        return None
    kind = k["kind"]
    out = dict(k)
    if kind == "sinc":
        for f in ("sigma_x", "sigma_y", "theta", "beta"):
            out[f] = None
    else:
        out["omega_c"] = None
        if out.get("beta") == 0.0:  # beta > 0 wherever a kind has one
            out["beta"] = None
    return out


def legacy_meta(meta: dict) -> dict:
    """The version-1 form of a decoded ``meta.json`` of either version (a new dict): ``null`` for absent values,
    ``degradation`` ``null`` when not applied, no ``applied`` / ``format_version`` keys. Version-1 input is
    returned as a copy."""
    out = copy.deepcopy(meta)
    if meta_format_version(meta) < 2:
        return out
    out.pop("format_version", None)
    deg = out.get("degradation")
    if isinstance(deg, dict):
        if not deg.pop("applied", True):
            out["degradation"] = None
        else:
            for name in ("first", "second"):
                st = deg[name]
                st["kernel"] = _legacy_kernel(st["kernel"])
                if st.get("jpeg_quality") == 0:
                    st["jpeg_quality"] = None
            deg["final"]["sinc"] = _legacy_kernel(deg["final"]["sinc"])
    src = out.get("source")
    if isinstance(src, dict):
        if src.get("path") == "" and src.get("sha256") == "":
            out["source"] = None
        elif not src.get("path_escaped"):
            src.pop("path_escaped", None)
    crop = out.get("crop")
    if isinstance(crop, dict) and crop.get("policy") == "none":
        out["crop"] = None
    return out
