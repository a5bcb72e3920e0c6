"""16-bit PNG I/O: bit-exact round trips, RGB order, deterministic bytes, atomic writes, typed errors."""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from skimage import data

from rawsynth.errors import InputError, ShapeError
from rawsynth.io.png16 import decode_png16, encode_png16, read_png16, write_png16

from ..conftest import input_error


def _random(shape, seed=0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 65536, size=shape, dtype=np.uint16)
    a.flat[0], a.flat[-1] = 0, 65535  # both extremes present
    return a


def _astronaut16() -> np.ndarray:
    return data.astronaut().astype(np.uint16) * 257  # 8 → 16 bit, full range (255 → 65535)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48), (33, 17, 3), (2, 3, 3)])
def test_round_trip_bit_exact(tmp_path, shape):
    a = _random(shape, seed=len(shape))
    assert np.array_equal(decode_png16(encode_png16(a)), a)
    path = tmp_path / "a.png"
    write_png16(path, a)
    b = read_png16(path)
    assert b.dtype == np.uint16 and b.shape == a.shape
    assert np.array_equal(b, a)


def test_round_trip_real_photo(tmp_path):
    a = _astronaut16()
    write_png16(tmp_path / "astronaut.png", a)
    assert np.array_equal(read_png16(tmp_path / "astronaut.png"), a)
    mosaic = a[..., 1].copy()  # a (H, W) mosaic-like plane
    write_png16(tmp_path / "plane.png", mosaic)
    assert np.array_equal(read_png16(tmp_path / "plane.png"), mosaic)


def test_rgb_order_matches_independent_readers(tmp_path):
    a = np.zeros((4, 6, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 1000, 30000, 65535  # R, G, B all different
    a[0, 0] = (65535, 0, 1)
    path = tmp_path / "rgb.png"
    write_png16(path, a)
    via_cv2 = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert via_cv2.dtype == np.uint16 and np.array_equal(via_cv2, a)
    photo = _astronaut16()
    write_png16(path, photo)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1], photo)
    # and the other way: a PNG written by OpenCV (BGR) reads back in RGB order
    cv2.imwrite(str(tmp_path / "cv.png"), np.ascontiguousarray(photo[..., ::-1]))
    assert np.array_equal(read_png16(tmp_path / "cv.png"), photo)


def test_deterministic_bytes(tmp_path):
    a = _random((31, 29, 3), seed=5)
    assert encode_png16(a) == encode_png16(a.copy())
    write_png16(tmp_path / "x.png", a)
    write_png16(tmp_path / "y.png", a)
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes() == encode_png16(a)


def test_accepts_views_and_big_endian():
    a = _random((10, 12), seed=3)
    assert np.array_equal(decode_png16(encode_png16(a[::2, ::3])), a[::2, ::3])
    be = a.astype(">u2")
    assert np.array_equal(decode_png16(encode_png16(be)), a)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.png"
    write_png16(path, _random((8, 8), seed=1))
    write_png16(path, _random((8, 8), seed=2))
    assert np.array_equal(read_png16(path), _random((8, 8), seed=2))
    assert os.listdir(tmp_path) == ["m.png"]
    with pytest.raises(ShapeError):
        write_png16(path, np.zeros((8, 8), np.float32))
    assert np.array_equal(read_png16(path), _random((8, 8), seed=2))  # untouched
    assert os.listdir(tmp_path) == ["m.png"]


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4), np.uint8),
    np.zeros((4, 4), np.float32),
    np.zeros((4, 4), np.int32),
    np.zeros((4, 4), np.int16),
    np.zeros((4, 4, 4), np.uint16),
    np.zeros((4, 4, 1), np.uint16),
    np.zeros((3, 4, 5), np.uint16),
    np.zeros((16,), np.uint16),
    np.zeros((0, 4), np.uint16),
    [[1, 2], [3, 4]],
])
def test_encode_rejects_wrong_dtype_or_shape(bad):
    with pytest.raises(ShapeError, match="png16"):
        encode_png16(bad)


def test_error_message_says_how_to_convert():
    with pytest.raises(ShapeError, match=r"astype\(np.uint16\)"):
        encode_png16(np.zeros((2, 2), np.float32))
    with pytest.raises(ShapeError, match="moveaxis"):
        encode_png16(np.zeros((3, 4, 5), np.uint16))


@pytest.mark.parametrize("cut", [1, 8, 20, 40, -13, -1])
def test_truncated(cut):
    png = encode_png16(_random((20, 20, 3)))
    with pytest.raises(InputError) as e:
        decode_png16(png[:cut], name="cut.png")
    assert e.value.reason == "truncated" and e.value.path == "cut.png"


def test_not_png_and_wrong_bit_depth(tmp_path):
    with pytest.raises(InputError) as e:
        decode_png16(b"hello, this is text and not a PNG at all")
    assert e.value.reason == "not a 16-bit PNG"
    ok, png8 = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError) as e:
        decode_png16(png8.tobytes())
    assert e.value.reason == "not a 16-bit PNG" and "8-bit" in str(e.value)
    ok, jpg = cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError) as e:
        decode_png16(jpg.tobytes())
    assert e.value.reason == "not a 16-bit PNG"


def test_16bit_with_alpha_is_unsupported_mode():
    ok, rgba = cv2.imencode(".png", np.zeros((4, 4, 4), np.uint16))
    with pytest.raises(InputError) as e:
        decode_png16(rgba.tobytes())
    assert e.value.reason == "unsupported mode"


def test_corrupt_chunk_is_unreadable():
    png = bytearray(encode_png16(_random((16, 16))))
    idat = png.index(b"IDAT")
    png[idat + 10] ^= 0xFF  # flip bits inside the compressed data: CRC no longer matches
    with pytest.raises(InputError) as e:
        decode_png16(bytes(png))
    assert e.value.reason == "unreadable"


def test_corrupt_zlib_with_valid_crc_is_unreadable():
    png = encode_png16(_random((16, 16)))
    i = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[i:i + 4])
    body = b"\x00" * length  # not a zlib stream
    chunk = png[i:i + 8] + body + struct.pack(">I", zlib.crc32(b"IDAT" + body) & 0xFFFFFFFF)
    bad = png[:i] + chunk + png[i + 12 + length:]
    with pytest.raises(InputError) as e:
        decode_png16(bad)
    assert e.value.reason == "unreadable"


def test_read_errors(tmp_path):  # missing and empty files: tests/io/test_read_errors.py
    (tmp_path / "cut.png").write_bytes(encode_png16(_random((9, 9)))[:-30])
    e = input_error(read_png16, tmp_path / "cut.png")
    assert e.reason == "truncated" and e.path.endswith("cut.png")
