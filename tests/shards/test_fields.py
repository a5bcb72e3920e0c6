"""Sample fields: bit-exact round trips, deterministic bytes, validation, typed decode errors, no pickle."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from rawsynth.errors import ConfigError, InputError, ShapeError
from rawsynth.io.png16 import encode_png16
from rawsynth.mns import SensorParams
from rawsynth.shards import decode_sample, encode_sample, legacy_meta, stable_meta
from rawsynth.shards.npy import encode_npy

from .helpers import make_arrays, make_meta


@pytest.mark.parametrize("members,version,names", [("npy", 2, ["hq.npy", "raw.npy"]),
                                                   ("png", 2, ["hq.png16", "raw.png16"]),
                                                   ("png", 1, ["hq.png", "raw.png"])])
def test_round_trip_bit_exact(members, version, names):
    raw, hq16, s8 = make_arrays(0, 64, "GRBG")
    meta = make_meta("000012_3", "GRBG", extra_field={"nested": [1, 2.5, "é"]})
    enc = encode_sample("000012_3", raw, hq16, meta, lq_srgb=s8, gt_srgb=s8[::-1].copy(), dng=b"II*\x00rest",
                        members=members, format_version=version)
    assert sorted(enc) == sorted(["__key__", "gt.png", "lq.png", "meta.json", "raw.dng", *names])
    dec = decode_sample(enc)
    assert dec["key"] == "000012_3"
    assert dec["raw_dn"].dtype == np.uint16 and np.array_equal(dec["raw_dn"], raw)
    assert dec["hq"].dtype == np.float32 and dec["hq"].shape == (64, 64, 3)
    assert np.array_equal(np.round(dec["hq"].astype(np.float64) * 65535).astype(np.uint16), hq16)  # uint16 level
    assert dec["meta"] == (meta if version == 1 else stable_meta(meta, (64, 64)))
    assert legacy_meta(dec["meta"]) == {**meta, **({"size": [64, 64], "noise_profile": ""} if version == 2 else {})}
    assert np.array_equal(dec["lq"], s8) and np.array_equal(dec["gt"], s8[::-1])
    assert dec["dng"] == b"II*\x00rest"
    # optional fields absent → None
    dec = decode_sample(encode_sample("k", raw, hq16, make_meta("k")))
    assert dec["lq"] is None and dec["gt"] is None and dec["dng"] is None


def test_float_hq_and_srgb_are_rounded():
    raw, hq16, s8 = make_arrays(1, 32)
    hq = hq16.astype(np.float32) / 65535
    s = s8.astype(np.float32) / 255
    a = encode_sample("k", raw, hq, make_meta("k"), lq_srgb=s)
    b = encode_sample("k", raw, hq16, make_meta("k"), lq_srgb=s8)
    assert a == b


def test_sixteen_bit_values_survive():
    sensor = SensorParams(16, 1024, 65535)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65536, (16, 20)).astype(np.uint16)
    raw[0, 0], raw[0, 1] = 65535, 256
    hq = rng.integers(0, 65536, (16, 20, 3)).astype(np.uint16)
    dec = decode_sample(encode_sample("k", raw, hq, make_meta("k", sensor=sensor)))
    assert np.array_equal(dec["raw_dn"], raw) and dec["raw_dn"].max() > 255
    assert np.array_equal(np.round(dec["hq"] * 65535.0).astype(np.uint16), hq)


def test_deterministic_bytes_and_sorted_utf8_json():
    raw, hq16, s8 = make_arrays(2, 32)
    meta = make_meta("k", note="café")
    a = encode_sample("k", raw, hq16, meta, gt_srgb=s8)
    b = encode_sample("k", raw.copy(), hq16.copy(), dict(reversed(list(meta.items()))), gt_srgb=s8.copy())
    assert a == b
    text = a["meta.json"].decode("utf-8")
    assert "café" in text
    assert text == json.dumps(stable_meta(meta, (32, 32)), sort_keys=True, ensure_ascii=False)
    # the 8-bit PNG is RGB order for any reader (OpenCV reads BGR)
    bgr = cv2.imdecode(np.frombuffer(a["gt.png"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(bgr[..., ::-1], s8)


@pytest.mark.parametrize("key", ["", "a.b", "a/b", "_a", "-a", "ab c", "é", "x" * 81, 12])
def test_bad_keys(key):
    raw, hq16, _ = make_arrays(0, 16)
    with pytest.raises(ConfigError, match="sample key"):
        encode_sample(key, raw, hq16, make_meta(str(key)))


def test_encode_validation():
    raw, hq16, s8 = make_arrays(0, 16)
    meta = make_meta("k")
    with pytest.raises(ShapeError, match="uint16"):
        encode_sample("k", raw.astype(np.int32), hq16, meta)
    with pytest.raises(ShapeError, match="share the size"):
        encode_sample("k", raw[:8], hq16, meta)
    with pytest.raises(ShapeError, match=r"\(H, W, 3\)"):
        encode_sample("k", raw, hq16[..., :2], meta)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        encode_sample("k", raw, hq16.astype(np.float32), meta)  # floats must be in [0, 1]
    with pytest.raises(ShapeError, match="white level"):
        encode_sample("k", np.full_like(raw, 4096), hq16, meta)
    with pytest.raises(ShapeError, match="size"):
        encode_sample("k", raw, hq16, meta, lq_srgb=s8[:8])
    with pytest.raises(ShapeError, match="DNG"):
        encode_sample("k", raw, hq16, meta, dng=b"not a dng")
    for bad, match in [({**meta, "key": "other"}, "must equal"), ({**meta, "mode": "x"}, "mode"),
                       ({**meta, "pattern": "RGBG"}, "pattern"), ({**meta, "seed": True}, "seed"),
                       ({k: v for k, v in meta.items() if k != "isp"}, "lacks"),
                       ({**meta, "extra": np.int64(3)}, "JSON"), ({**meta, "extra": float("nan")}, "JSON"),
                       ({**meta, "sensor": {"bit_depth": 12, "black_level": 5000, "white_level": 4095}}, "black")]:
        with pytest.raises(ConfigError, match=match):
            encode_sample("k", raw, hq16, bad)


def _good():
    raw, hq16, s8 = make_arrays(0, 16)
    return encode_sample("k", raw, hq16, make_meta("k"), lq_srgb=s8)


@pytest.mark.parametrize("field", ["raw.npy", "hq.npy", "meta.json", "__key__"])
def test_missing_field(field):
    s = _good()
    del s[field]
    with pytest.raises(InputError) as e:
        decode_sample(s, "shard-000000.tar:k")
    assert e.value.reason == "missing field" and e.value.path == "shard-000000.tar:k"


def test_corrupt_fields():
    cases = {
        "raw.npy": [b"garbage", _good()["raw.npy"][:-20], encode_npy(np.zeros((16, 16, 3), np.uint16)),
                    _npy(np.zeros((16, 16)))],  # float64, not uint16
        "hq.npy": [b"", encode_npy(np.zeros((16, 16), np.uint16)), encode_npy(np.zeros((8, 16, 3), np.uint16)),
                   _npy(np.zeros((16, 16, 3), np.int16)), _npy(np.array([None] * 3, dtype=object), pickle=True)],
        "raw.png16": [b"garbage", cv2.imencode(".png", np.zeros((16, 16), np.uint8))[1].tobytes()],
        "hq.png": [encode_png16(np.zeros((16, 16), np.uint16)), encode_png16(np.zeros((8, 16, 3), np.uint16))],
        "meta.json": [b"{", b"\xff\xfe", b"[1, 2]", json.dumps({"pattern": "RGGB"}).encode(),
                      json.dumps({**make_meta("k"), "pattern": "XXXX"}).encode(),
                      json.dumps({**make_meta("k"), "key": "other"}).encode()],
        "lq.png": [b"garbage", encode_png16(np.zeros((16, 16, 3), np.uint16)),
                   cv2.imencode(".png", np.zeros((8, 16, 3), np.uint8))[1].tobytes()],
    }
    for field, values in cases.items():
        for v in values:
            s = {**_good(), field: v}
            if field in ("raw.png16", "hq.png"):  # the reader takes these only when the .npy is absent
                s.pop(field.split(".")[0] + ".npy")
            with pytest.raises(InputError) as e:
                decode_sample(s)
            assert e.value.reason == "corrupt field", (field, v[:20])
    with pytest.raises(InputError, match="not bytes"):
        decode_sample({**_good(), "raw.npy": np.zeros(3)})


def _npy(a, pickle=False):
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=pickle)
    return buf.getvalue()


@pytest.mark.parametrize("ext", ["pyd", "pickle", "pth", "pkl", "PTH"])
def test_refuses_pickle_members(ext, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle must never be called")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    s = {**_good(), f"extra.{ext}": pickle.dumps({"x": 1})}
    with pytest.raises(InputError) as e:
        decode_sample(s)
    assert e.value.reason == "unsafe field"


def test_unknown_fields_are_ignored():
    s = {**_good(), "notes.txt": b"hello", "__url__": "somewhere"}
    assert decode_sample(s)["key"] == "k"
