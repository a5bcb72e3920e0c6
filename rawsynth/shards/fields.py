"""Encode and decode the fields of one shard sample (the member files ``KEY.FIELD``), deterministically and
without unpickling. See ``docs/format.md``."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np

from ..errors import ConfigError, InputError, ShapeError
from ..io.png16 import decode_png16, encode_png8, encode_png16
from ..mns.cfa import Pattern
from ..mns.sensor import SensorParams
from .npy import decode_npy, encode_npy
from .schema import FORMAT_VERSION, stable_meta

__all__ = ["REQUIRED_FIELDS", "OPTIONAL_FIELDS", "REQUIRED_META", "MODES", "UNSAFE_EXTENSIONS", "KEY_RE",
           "MEMBER_FORMATS", "encode_sample", "decode_sample", "check_key"]

#: Members every sample has (format version 2, default ``members="npy"``).
REQUIRED_FIELDS = ("raw.npy", "hq.npy", "meta.json")
#: Members a sample may have.
OPTIONAL_FIELDS = ("lq.png", "gt.png", "raw.dng")
#: ``members=`` choices → the field names of the mosaic and the HQ (format version 2).
MEMBER_FORMATS = {"npy": ("raw.npy", "hq.npy"), "png": ("raw.png16", "hq.png16")}
#: The mosaic / HQ field names a reader accepts, in the order it looks for them (v2 npy, v2 png, v1).
_RAW_FIELDS = ("raw.npy", "raw.png16", "raw.png")
_HQ_FIELDS = ("hq.npy", "hq.png16", "hq.png")
#: Keys ``meta.json`` must hold, with their JSON types (``None`` = null allowed).
REQUIRED_META: dict[str, tuple[type | None, ...]] = {
    "key": (str,), "seed": (int,), "mode": (str,), "pattern": (str,), "sensor": (dict,), "isp": (dict,),
    "noise": (dict,), "degradation": (dict, None), "source": (dict, None), "crop": (dict, None),
    "version": (str,),
}
#: Values of ``meta["mode"]``.
MODES = ("rddm", "ddnet")
#: Member extensions that would need unpickling to decode; :func:`decode_sample` refuses them.
UNSAFE_EXTENSIONS = frozenset({"pyd", "pickle", "pkl", "pth", "pt", "ckpt", "torch"})
#: A valid sample key: ASCII letters, digits, ``_`` and ``-``, starting with a letter or digit, ≤ 80 chars.
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid sample key (see :data:`KEY_RE`: no dots, no slashes), else raise
    :class:`ConfigError`."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise ConfigError(f"invalid sample key {key!r}: use 1-80 ASCII letters, digits, '_' or '-' (no dots, "
                          "no slashes, not starting with '_' or '-'), e.g. '000012_3'")
    return key


# --------------------------------------------------------------------------------------------- encoding


_HQ_ROWS = 32  # rows per float64 block of _hq_uint16 (32 x 512 x 3 x 8 bytes = 384 kB)


def _hq_uint16(hq: np.ndarray) -> np.ndarray:
    if not isinstance(hq, np.ndarray):
        raise ShapeError(f"hq_linear must be a numpy array, got {type(hq).__name__}; convert a (3, H, W) tensor "
                         "with t.permute(1, 2, 0).cpu().numpy()")
    if hq.ndim != 3 or hq.shape[2] != 3:
        raise ShapeError(f"hq_linear must have shape (H, W, 3), got {hq.shape}")
    if hq.dtype == np.uint16:
        return hq
    if hq.dtype.kind != "f":
        raise ShapeError(f"hq_linear must be float in [0, 1] or uint16, got {hq.dtype}")
    lo, hi = hq.min(), hq.max()
    if not (lo >= 0 and hi <= 1):  # NaN propagates through min/max and fails this too
        raise ShapeError(f"hq_linear must be finite and in [0, 1], got range [{np.nanmin(hq)}, {np.nanmax(hq)}]; "
                         "clip it first (linear HQ is clipped to [0, 1] by IPTP)")
    # round(x · 65535) in float64 (exact product), half to even, through a float64 buffer of _HQ_ROWS rows that stays
    # in the CPU cache (the same operations per element as one whole-image buffer: 1.8 -> 1.0 ms at 512²)
    out = np.empty(hq.shape, np.uint16)
    buf = np.empty((min(_HQ_ROWS, hq.shape[0]),) + hq.shape[1:], np.float64)
    for i in range(0, hq.shape[0], _HQ_ROWS):
        rows = hq[i:i + _HQ_ROWS]
        t = buf[:len(rows)]
        np.multiply(rows, 65535.0, out=t, dtype=np.float64)
        np.rint(t, out=t)
        out[i:i + _HQ_ROWS] = t
    return out


def _srgb_uint8(x: np.ndarray, name: str, hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != 3:
        raise ShapeError(f"{name} must be an (H, W, 3) numpy array, got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[:2] != hw:
        raise ShapeError(f"{name} must have the mosaic's size {hw[0]}x{hw[1]}, got {x.shape[0]}x{x.shape[1]}")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise ShapeError(f"{name} must be uint8 or float in [0, 1], got {x.dtype}")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ShapeError(f"{name} must be finite and in [0, 1], got range [{np.nanmin(x)}, {np.nanmax(x)}]")
    return np.round(x.astype(np.float64) * 255.0).astype(np.uint8)


def _check_meta(key: str, meta: dict) -> SensorParams:
    if not isinstance(meta, dict):
        raise ConfigError(f"sample {key}: meta must be a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ConfigError(f"sample {key}: meta lacks {missing}; the shard format requires {sorted(REQUIRED_META)}")
    for k, types in REQUIRED_META.items():
        v = meta[k]
        ok = any(v is None if t is None else isinstance(v, t) and not (t is int and isinstance(v, bool))
                 for t in types)
        if not ok:
            names = " or ".join("null" if t is None else t.__name__ for t in types)
            raise ConfigError(f"sample {key}: meta[{k!r}] must be {names}, got {type(v).__name__}")
    if meta["key"] != key:
        raise ConfigError(f"sample {key}: meta['key'] is {meta['key']!r}; it must equal the sample key")
    if meta["mode"] not in MODES:
        raise ConfigError(f"sample {key}: meta['mode'] must be one of {list(MODES)}, got {meta['mode']!r}")
    try:
        Pattern(meta["pattern"])
    except ValueError:
        raise ConfigError(f"sample {key}: meta['pattern'] must be one of {[p.value for p in Pattern]}, "
                          f"got {meta['pattern']!r}") from None
    return SensorParams.from_dict(meta["sensor"])


def encode_sample(key: str, raw_dn: np.ndarray, hq_linear: np.ndarray, meta: dict,
                  lq_srgb: np.ndarray | None = None, gt_srgb: np.ndarray | None = None,
                  dng: bytes | None = None, *, members: str = "npy",
                  format_version: int = FORMAT_VERSION) -> dict[str, bytes]:
    """Encode one sample's fields as bytes, ready for :func:`rawsynth.shards.write_shard`.

    Args:
        key: the sample key (:data:`KEY_RE`, e.g. ``"000012_3"`` = source image 12, crop 3).
        raw_dn: ``(H, W)`` uint16 Bayer mosaic in DN, every value ``<= meta["sensor"]["white_level"]``.
        hq_linear: ``(H, W, 3)`` linear camera RGB: float in ``[0, 1]`` (stored as ``round(x · 65535)``)
            or uint16 (stored as is).
        meta: the sample's metadata, JSON-serialisable, with at least the keys of :data:`REQUIRED_META`
            (``meta["key"] == key``). Written with sorted keys; NaN/inf are rejected (not JSON).
        lq_srgb: optional ``(H, W, 3)`` sRGB LQ image, uint8 or float in ``[0, 1]`` (rounded to 8 bits).
        gt_srgb: optional ``(H, W, 3)`` sRGB GT image, uint8 or float in ``[0, 1]``.
        dng: optional DNG file bytes of the mosaic (e.g. from :func:`rawsynth.io.encode_dng`).
        members: ``"npy"`` (``raw.npy``/``hq.npy``) or ``"png"`` (16-bit PNG as ``raw.png16``/``hq.png16``).
        format_version: 2 (default: ``meta`` is written in its stable form, :func:`~rawsynth.shards.schema.
            stable_meta`, with ``format_version``), or 1 (the former format: ``raw.png``/``hq.png`` and
            ``meta`` as given; ``members`` must be ``"png"``), kept to write fixtures for version-1 readers.

    Returns:
        ``{"__key__": key, "hq.npy": ..., "meta.json": ..., "raw.npy": ...}`` (other names per ``members``
        and ``format_version``) plus ``"lq.png"``, ``"gt.png"``, ``"raw.dng"`` when given. Identical inputs
        give identical bytes.

    Raises:
        ConfigError: invalid key, or ``meta`` not a dict, missing keys, wrong types, not JSON-serialisable.
        ShapeError: wrong dtype/shape/range of an array, sizes that differ, DN above the white level.
    """
    check_key(key)
    if members not in MEMBER_FORMATS:
        raise ConfigError(f"members must be one of {sorted(MEMBER_FORMATS)}, got {members!r}")
    if format_version not in (1, FORMAT_VERSION) or (format_version == 1 and members != "png"):
        raise ConfigError(f"format_version must be 1 (with members='png') or {FORMAT_VERSION}, got "
                          f"{format_version!r} with members={members!r}")
    sensor = _check_meta(key, meta)
    if not isinstance(raw_dn, np.ndarray) or raw_dn.ndim != 2 or raw_dn.dtype != np.uint16:
        raise ShapeError(f"sample {key}: raw_dn must be an (H, W) uint16 array of DN, got "
                         f"{getattr(raw_dn, 'dtype', type(raw_dn).__name__)} {getattr(raw_dn, 'shape', '')}; "
                         "quantise with rawsynth.mns.quantize")
    hw = raw_dn.shape
    hq = _hq_uint16(hq_linear)
    if hq.shape[:2] != hw:
        raise ShapeError(f"sample {key}: hq_linear is {hq.shape[0]}x{hq.shape[1]}, the mosaic {hw[0]}x{hw[1]}; "
                         "they must share the size")
    if raw_dn.size and int(raw_dn.max()) > sensor.white_level:
        raise ShapeError(f"sample {key}: raw_dn reaches {int(raw_dn.max())} DN, above the white level "
                         f"{sensor.white_level} of meta['sensor']; the mosaic and its sensor disagree")
    if format_version >= 2:
        meta = stable_meta(meta, hw)
    try:
        meta_bytes = json.dumps(meta, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sample {key}: meta is not JSON-serialisable ({e}); convert numpy values with "
                          ".item()/.tolist() and drop NaN/inf") from None
    if format_version == 1:
        out: dict[str, bytes] = {"__key__": key, "raw.png": encode_png16(raw_dn), "hq.png": encode_png16(hq)}
    elif members == "png":
        out = {"__key__": key, "raw.png16": encode_png16(raw_dn), "hq.png16": encode_png16(hq)}
    else:
        out = {"__key__": key, "raw.npy": encode_npy(raw_dn), "hq.npy": encode_npy(hq)}
    out["meta.json"] = meta_bytes
    if lq_srgb is not None:
        out["lq.png"] = encode_png8(_srgb_uint8(lq_srgb, f"sample {key}: lq_srgb", hw))
    if gt_srgb is not None:
        out["gt.png"] = encode_png8(_srgb_uint8(gt_srgb, f"sample {key}: gt_srgb", hw))
    if dng is not None:
        if not isinstance(dng, (bytes, bytearray)) or bytes(dng[:4]) not in _TIFF_MAGIC:
            raise ShapeError(f"sample {key}: dng must be the bytes of a DNG (TIFF) file")
        out["raw.dng"] = bytes(dng)
    return out


# --------------------------------------------------------------------------------------------- decoding


def _field(sample: dict, field: str, name: str) -> bytes:
    if field not in sample:
        raise InputError(name, "missing field", detail=f"no {field} member",
                         hint=f"every sample needs {', '.join(REQUIRED_FIELDS)}; re-generate the shard")
    v = sample[field]
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise InputError(name, "corrupt field", detail=f"{field} is {type(v).__name__}, not bytes",
                         hint="read shards without a webdataset .decode() stage")
    return bytes(v)


def _decode_png8(data: bytes, field: str, name: str) -> np.ndarray:
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if a is None or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        got = "nothing" if a is None else f"{a.dtype} {a.shape}"
        raise InputError(name, "corrupt field", detail=f"{field}: expected an 8-bit RGB PNG, OpenCV decoded {got}")
    return np.ascontiguousarray(a[..., ::-1])  # BGR → RGB


def _decode_meta(data: bytes, name: str) -> dict:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(name, "corrupt field", detail=f"meta.json: {e}") from None
    if not isinstance(meta, dict):
        raise InputError(name, "corrupt field", detail=f"meta.json holds a {type(meta).__name__}, not an object")
    for k in ("pattern", "sensor"):
        if k not in meta:
            raise InputError(name, "corrupt field", detail=f"meta.json lacks {k!r}")
    try:
        Pattern(meta["pattern"])
    except (ValueError, TypeError):
        raise InputError(name, "corrupt field", detail=f"meta.json: unknown pattern {meta['pattern']!r}") from None
    try:
        SensorParams.from_dict(meta["sensor"])
    except (ConfigError, TypeError) as e:
        raise InputError(name, "corrupt field", detail=f"meta.json: bad sensor ({e})") from None
    return meta


def decode_sample(sample: dict[str, bytes], name: str = "<sample>") -> dict:
    """Decode one sample (as read from a shard) into arrays.

    Args:
        sample: ``{"__key__": KEY, "raw.png": bytes, "hq.png": bytes, "meta.json": bytes, ...}`` as yielded
            by :func:`rawsynth.shards.iter_shard` or ``webdataset.WebDataset`` (without a ``.decode()``
            stage). Fields starting with ``__`` and unknown fields are ignored.
        name: what to call the sample in error messages (e.g. ``"shard-000000.tar:000012_3"``).

    Returns:
        ``{"key": str, "raw_dn": (H, W) uint16, "hq": (H, W, 3) float32 in [0, 1], "meta": dict,
        "lq": (H, W, 3) uint8 or None, "gt": (H, W, 3) uint8 or None, "dng": bytes or None}``.
        ``hq`` is the stored uint16 HQ / 65535; arrays are RGB order. The mosaic and HQ are read from
        ``raw.npy``/``hq.npy`` (version 2), ``raw.png16``/``hq.png16`` (version 2, ``members="png"``) or
        ``raw.png``/``hq.png`` (version 1); ``meta`` is returned as stored (see
        :func:`rawsynth.shards.schema.legacy_meta` for the version-1 form).

    Raises:
        InputError: reason ``"missing field"`` (no ``__key__``, mosaic, HQ or ``meta.json``),
            ``"corrupt field"`` (undecodable PNG/JSON, wrong bit depth or shape, sizes that differ, bad
            pattern or sensor in ``meta.json``, key mismatch) or ``"unsafe field"`` (a member that only
            unpickling could decode, e.g. ``.pyd``/``.pickle``/``.pth``: never decoded).
    """
    if not isinstance(sample, dict):
        raise InputError(name, "corrupt field", detail=f"a sample is a dict of bytes, got {type(sample).__name__}")
    unsafe = sorted(f for f in sample if not f.startswith("__") and f.rsplit(".", 1)[-1].lower() in UNSAFE_EXTENSIONS)
    if unsafe:
        raise InputError(name, "unsafe field", detail=f"member(s) {unsafe} would need unpickling",
                         hint="rawsynth never unpickles shard data; remove these members from the shard")
    key = sample.get("__key__")
    if not isinstance(key, str) or not key:
        raise InputError(name, "missing field", detail="no __key__")
    raw_field = next((f for f in _RAW_FIELDS if f in sample), "raw.npy")
    hq_field = next((f for f in _HQ_FIELDS if f in sample), "hq.npy")
    raw = _decode16(_field(sample, raw_field, name), raw_field, name)
    hq = _decode16(_field(sample, hq_field, name), hq_field, name)
    meta = _decode_meta(_field(sample, "meta.json", name), name)
    if raw.ndim != 2:
        raise InputError(name, "corrupt field", detail=f"raw.png must be a grey (H, W) mosaic, got {raw.shape}")
    if hq.ndim != 3:
        raise InputError(name, "corrupt field", detail=f"hq.png must be RGB (H, W, 3), got {hq.shape}")
    if hq.shape[:2] != raw.shape:
        raise InputError(name, "corrupt field", detail=f"hq.png is {hq.shape[0]}x{hq.shape[1]}, raw.png "
                         f"{raw.shape[0]}x{raw.shape[1]}")
    if "key" in meta and meta["key"] != key:
        raise InputError(name, "corrupt field", detail=f"meta.json key {meta['key']!r} != member key {key!r}")
    out = {"key": key, "raw_dn": raw, "hq": hq.astype(np.float32) / np.float32(65535.0), "meta": meta,
           "lq": None, "gt": None, "dng": None}
    for field, slot in (("lq.png", "lq"), ("gt.png", "gt")):
        if field in sample:
            img = _decode_png8(_field(sample, field, name), field, name)
            if img.shape[:2] != raw.shape:
                raise InputError(name, "corrupt field", detail=f"{field} is {img.shape[0]}x{img.shape[1]}, "
                                 f"raw.png {raw.shape[0]}x{raw.shape[1]}")
            out[slot] = img
    if "raw.dng" in sample:
        out["dng"] = _field(sample, "raw.dng", name)
    return out


def _decode16(data: bytes, field: str, name: str) -> np.ndarray:
    try:
        if field.endswith(".npy"):
            return decode_npy(data, f"{name}/{field}")
        return decode_png16(data, f"{name}/{field}")
    except InputError as e:
        raise InputError(name, "corrupt field", detail=f"{field}: {e.reason}" + (f", {e.detail}" if e.detail else ""),
                         hint="re-generate the shard") from None
