"""Tests of rawsynth.io.images: exact round trips per format/bit depth, EXIF orientation on every decoder path,
alpha compositing against the formula, and a typed InputError (picklable) for every kind of bad input."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps
from skimage import data

from rawsynth.errors import ConfigError, InputError
from rawsynth.io import images
from rawsynth.io.images import DEFAULT_MAX_PIXELS, AlphaPolicy, LoadedImage, decode_srgb, read_srgb

ASTRO = data.astronaut()                      # (512, 512, 3) uint8
CROP = np.ascontiguousarray(ASTRO[40:160, 100:300])  # (120, 200, 3): non-square, no symmetry
CAMERA = data.camera()                        # (512, 512) uint8 gray
RNG = np.random.default_rng(1234)

# Pillow transpose that *undoes* EXIF orientation k: the stored image is upright -> inverse(k).
_INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}


def _stored(upright: np.ndarray, k: int) -> np.ndarray:
    """What a camera writes for orientation tag ``k`` so that a viewer shows ``upright``."""
    if k == 1:
        return upright.copy()
    flat = upright.ndim == 3 and upright.dtype == np.uint16
    if flat:  # Pillow has no 16-bit RGB mode: transpose each channel separately
        return np.stack([_stored(upright[..., c], k) for c in range(upright.shape[2])], axis=-1)
    return np.asarray(Image.fromarray(upright).transpose(_INVERSE[k]))


def _u16(rgb8: np.ndarray) -> np.ndarray:
    """A 16-bit image with meaningful low bits (so an 8-bit truncation would be detected)."""
    return rgb8.astype(np.uint16) * 257 + RNG.integers(0, 200, rgb8.shape, dtype=np.uint16)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _insert_png_chunks(png: bytes, *chunks: bytes) -> bytes:
    """Insert ancillary chunks right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + b"".join(chunks) + png[33:]


def _exif_block(k: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = k
    return exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\x00\x00") else exif.tobytes()


def _check_result(r: LoadedImage, shape: tuple[int, int]) -> None:
    assert isinstance(r, LoadedImage)
    assert r.image.shape == (*shape, 3)
    assert r.image.dtype == np.float32 and r.image.flags.c_contiguous
    assert 0.0 <= r.image.min() and r.image.max() <= 1.0


# ---------------------------------------- PNG


def test_png8_rgb_round_trip_is_bit_exact(tmp_path):
    p = tmp_path / "astro.png"
    Image.fromarray(ASTRO).save(p)
    r = read_srgb(p)
    _check_result(r, (512, 512))
    assert np.array_equal(np.round(r.image * 255).astype(np.uint8), ASTRO)
    assert np.array_equal(r.image, ASTRO.astype(np.float32) / 255)
    assert (r.bit_depth, r.format, r.mode, r.had_alpha, r.path) == (8, "PNG", "RGB", False, str(p))


def test_png16_rgb_is_read_at_full_precision(tmp_path):
    src = _u16(CROP)
    p = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(p), src[..., ::-1])  # OpenCV writes BGR
    r = read_srgb(p)
    _check_result(r, CROP.shape[:2])
    assert r.bit_depth == 16 and r.format == "PNG" and not r.had_alpha
    assert np.array_equal(r.image, src.astype(np.float32) / 65535)
    assert np.any(np.round(r.image * 65535).astype(np.int64) % 257)  # low bits survived (no 8-bit truncation)


def test_png16_gray_gives_three_equal_channels(tmp_path):
    src = CAMERA.astype(np.uint16) * 257 + 3
    p = tmp_path / "gray16.png"
    assert cv2.imwrite(str(p), src)
    r = read_srgb(p)
    _check_result(r, CAMERA.shape)
    assert r.bit_depth == 16 and r.mode == "I;16"
    for c in range(3):
        assert np.array_equal(r.image[..., c], src.astype(np.float32) / 65535)


def test_png16_rgba_composites_like_the_formula(tmp_path):
    rgb = _u16(CROP)
    a16 = np.linspace(0, 65535, CROP.shape[1]).astype(np.uint16)[None, :].repeat(CROP.shape[0], 0)
    p = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(p), np.dstack([rgb[..., ::-1], a16]))
    r = read_srgb(p, alpha="black")
    a = a16[..., None] / 65535.0
    assert r.had_alpha and r.bit_depth == 16
    np.testing.assert_allclose(r.image, a * rgb / 65535.0, atol=1e-6)


def test_png16_gray_with_trns_colour_key(tmp_path):
    src = CAMERA[:64, :80].astype(np.uint16) * 257
    key = int(src[10, 10])
    ok, buf = cv2.imencode(".png", src)
    p = tmp_path / "trns16.png"
    p.write_bytes(_insert_png_chunks(buf.tobytes(), _chunk(b"tRNS", struct.pack(">H", key))))
    r = read_srgb(p, alpha="black")
    assert r.had_alpha
    expected = np.where(src == key, 0.0, src / 65535.0)
    np.testing.assert_allclose(r.image[..., 1], expected, atol=1e-7)
    with pytest.raises(InputError) as e:
        read_srgb(p, alpha=AlphaPolicy.ERROR)
    assert e.value.reason == "has alpha"


def test_palette_png_equals_its_rgb_conversion(tmp_path):
    pal = Image.fromarray(ASTRO).quantize(64)
    p = tmp_path / "pal.png"
    pal.save(p)
    r = read_srgb(p)
    assert r.mode == "P" and not r.had_alpha and r.bit_depth == 8
    assert np.array_equal(r.image, np.asarray(pal.convert("RGB")).astype(np.float32) / 255)


def test_palette_png_with_transparency(tmp_path):
    pal = Image.fromarray(CROP).quantize(32)
    idx = np.asarray(pal)
    t = int(idx[0, 0])
    p = tmp_path / "pal_t.png"
    pal.save(p, transparency=t)
    rgb = np.asarray(pal.convert("RGB")) / 255.0
    for policy, bg in (("white", 1.0), ("black", 0.0)):
        r = read_srgb(p, alpha=policy)
        assert r.had_alpha and r.mode == "P"
        expected = np.where((idx == t)[..., None], bg, rgb)
        np.testing.assert_allclose(r.image, expected, atol=1e-6)
    with pytest.raises(InputError) as e:
        read_srgb(p, alpha="error")
    assert e.value.reason == "has alpha"


@pytest.mark.parametrize("policy,bg", [(AlphaPolicy.WHITE, 1.0), (AlphaPolicy.BLACK, 0.0), ("white", 1.0)])
def test_rgba_png_composite_matches_formula(tmp_path, policy, bg):
    a8 = RNG.integers(0, 256, CROP.shape[:2], dtype=np.uint8)
    a8[:10] = 0
    a8[-10:] = 255
    p = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([CROP, a8]), "RGBA").save(p)
    r = read_srgb(p, alpha=policy)
    a = a8[..., None].astype(np.float64) / 255
    expected = a * (CROP / 255.0) + (1 - a) * bg
    assert r.had_alpha and r.mode == "RGBA"
    np.testing.assert_allclose(r.image, expected, atol=1e-6)
    assert np.all(r.image[:10] == bg)  # fully transparent rows are exactly the background


def test_alpha_error_policy_and_opaque_alpha(tmp_path):
    p = tmp_path / "rgba.png"
    a8 = np.full(CROP.shape[:2], 255, np.uint8)
    a8[5, 7] = 254
    Image.fromarray(np.dstack([CROP, a8]), "RGBA").save(p)
    with pytest.raises(InputError) as e:
        read_srgb(p, alpha="error")
    assert e.value.reason == "has alpha" and str(p) in str(e.value)
    # an all-opaque alpha channel is harmless: dropped under every policy, but reported
    q = tmp_path / "opaque.png"
    Image.fromarray(np.dstack([CROP, np.full(CROP.shape[:2], 255, np.uint8)]), "RGBA").save(q)
    r = read_srgb(q, alpha="error")
    assert r.had_alpha and np.array_equal(r.image, CROP.astype(np.float32) / 255)


def test_gray_and_gray_alpha_png(tmp_path):
    p = tmp_path / "gray.png"
    Image.fromarray(CAMERA).save(p)
    r = read_srgb(p)
    assert r.mode == "L" and r.bit_depth == 8
    assert all(np.array_equal(r.image[..., c], CAMERA.astype(np.float32) / 255) for c in range(3))
    a8 = np.tile(np.arange(256, dtype=np.uint8), (512, 2))
    q = tmp_path / "la.png"
    Image.fromarray(np.dstack([CAMERA, a8]), "LA").save(q)
    r = read_srgb(q, alpha="white")
    a = a8 / 255.0
    assert r.mode == "LA" and r.had_alpha
    np.testing.assert_allclose(r.image[..., 2], a * CAMERA / 255.0 + (1 - a), atol=1e-6)


# ---------------------------------------- orientation


def test_orientation_helper_matches_pillow_exif_transpose():
    x = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for k in range(1, 9):
        im = Image.fromarray(x)
        exif = im.getexif()
        exif[0x0112] = k
        buf = io.BytesIO()
        im.save(buf, "PNG", exif=exif)
        ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        assert np.array_equal(images._orient(x, k), ref), k


@pytest.mark.parametrize("k", range(1, 9))
def test_jpeg_exif_orientation_is_applied(tmp_path, k):
    exif = Image.Exif()
    exif[0x0112] = k
    p = tmp_path / f"o{k}.jpg"
    Image.fromarray(_stored(CROP, k)).save(p, quality=95, exif=exif)
    r = read_srgb(p)
    _check_result(r, CROP.shape[:2])
    assert r.format == "JPEG" and r.bit_depth == 8
    assert np.abs(r.image - CROP / 255.0).mean() < 3 / 255
    ref = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    assert np.array_equal(r.image, ref.astype(np.float32) / 255)  # same decode as Pillow's own transpose


@pytest.mark.parametrize("k", range(1, 9))
def test_16bit_png_and_tiff_exif_orientation(tmp_path, k):
    upright = _u16(CROP[:30, :50])
    stored = _stored(upright, k)
    ok, buf = cv2.imencode(".png", stored[..., ::-1])
    png = tmp_path / f"o{k}.png"
    png.write_bytes(_insert_png_chunks(buf.tobytes(), _chunk(b"eXIf", _exif_block(k))))
    tif = tmp_path / f"o{k}.tif"
    tifffile.imwrite(tif, stored, photometric="rgb", extratags=[(274, "H", 1, k, True)])
    for p in (png, tif):
        r = read_srgb(p)
        assert r.bit_depth == 16
        assert np.array_equal(r.image, upright.astype(np.float32) / 65535), p.suffix


def test_tiff_cv2_fallback_neutralises_orientation(tmp_path, monkeypatch):
    """When tifffile cannot decode (e.g. LZW without imagecodecs), OpenCV decodes with the orientation tag reset,
    and the single numpy helper applies it: same upright result as the tifffile path."""
    upright = _u16(CROP[:30, :50])
    p = tmp_path / "o6.tif"
    tifffile.imwrite(p, _stored(upright, 6), photometric="rgb", extratags=[(274, "H", 1, 6, True)])

    def no_codec(self, *a, **kw):
        raise KeyError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    r = read_srgb(p)
    assert r.bit_depth == 16 and np.array_equal(r.image, upright.astype(np.float32) / 65535)


def test_lzw_16bit_gray_tiff_from_pillow(tmp_path):
    g = CAMERA[:40, :60].astype(np.uint16) * 257 + 1
    p = tmp_path / "lzw.tif"
    Image.fromarray(g).save(p, compression="tiff_lzw", tiffinfo={274: 8})
    r = read_srgb(p)
    assert r.bit_depth == 16 and r.image.shape == (60, 40, 3)
    assert np.array_equal(r.image[..., 0], np.rot90(g, 1).astype(np.float32) / 65535)


def test_8bit_tiff_orientation(tmp_path):
    p = tmp_path / "o5.tif"
    tifffile.imwrite(p, _stored(CROP, 5), photometric="rgb", extratags=[(274, "H", 1, 5, True)])
    r = read_srgb(p)
    assert r.bit_depth == 8 and np.array_equal(r.image, CROP.astype(np.float32) / 255)


# ---------------------------------------- TIFF / WebP / CMYK / other


def test_tiff_8_and_16_bit_round_trips(tmp_path):
    p8, p16 = tmp_path / "a8.tif", tmp_path / "a16.tif"
    tifffile.imwrite(p8, ASTRO, photometric="rgb")
    src16 = _u16(ASTRO)
    tifffile.imwrite(p16, src16, photometric="rgb", compression="zlib")
    r8, r16 = read_srgb(p8), read_srgb(p16)
    assert (r8.format, r8.bit_depth, r16.format, r16.bit_depth) == ("TIFF", 8, "TIFF", 16)
    assert np.array_equal(r8.image, ASTRO.astype(np.float32) / 255)
    assert np.array_equal(r16.image, src16.astype(np.float32) / 65535)


def test_tiff_planar_float_and_alpha(tmp_path):
    src16 = _u16(CROP)
    p = tmp_path / "planar.tif"
    tifffile.imwrite(p, np.moveaxis(src16, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_srgb(p).image, src16.astype(np.float32) / 65535)

    f = (CROP / 255.0).astype(np.float32)
    q = tmp_path / "float.tif"
    tifffile.imwrite(q, f, photometric="rgb")  # Pillow cannot open float RGB TIFF
    r = read_srgb(q)
    assert r.bit_depth == 32 and r.mode == "RGB;32F" and np.array_equal(r.image, f)

    a16 = np.linspace(0, 65535, CROP.shape[1]).astype(np.uint16)[None, :].repeat(CROP.shape[0], 0)
    a = a16[..., None] / 65535.0
    straight = tmp_path / "straight.tif"
    tifffile.imwrite(straight, np.dstack([src16, a16]), photometric="rgb", extrasamples=[2])
    np.testing.assert_allclose(read_srgb(straight).image, a * src16 / 65535.0 + (1 - a), atol=1e-6)
    premult = tmp_path / "premult.tif"
    pm = np.round(src16 * a).astype(np.uint16)
    tifffile.imwrite(premult, np.dstack([pm, a16]), photometric="rgb", extrasamples=[1])
    np.testing.assert_allclose(read_srgb(premult, alpha="white").image, pm / 65535.0 + (1 - a), atol=1e-6)


def test_webp_lossless_round_trip(tmp_path):
    p = tmp_path / "a.webp"
    Image.fromarray(CROP).save(p, lossless=True)
    r = read_srgb(p)
    assert r.format == "WEBP" and np.array_equal(r.image, CROP.astype(np.float32) / 255)
    a8 = np.tile(np.arange(200, dtype=np.uint8), (120, 1))
    q = tmp_path / "a_rgba.webp"
    Image.fromarray(np.dstack([CROP, a8]), "RGBA").save(q, lossless=True, exact=True)
    a = a8[..., None] / 255.0
    np.testing.assert_allclose(read_srgb(q, alpha="black").image, a * CROP / 255.0, atol=1e-6)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    coffee = data.coffee()
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(coffee).convert("CMYK").save(p, quality=95)
    r = read_srgb(p)
    _check_result(r, coffee.shape[:2])
    assert r.mode == "CMYK" and r.format == "JPEG"
    ref = np.asarray(Image.open(p).convert("RGB")) / 255.0
    assert np.abs(r.image - ref).max() < 1e-6
    assert np.abs(r.image - coffee / 255.0).mean() < 4 / 255


def test_multiframe_gif_reads_frame_0(tmp_path):
    frames = [Image.fromarray(np.full((8, 9, 3), v, np.uint8)) for v in (10, 200)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    r = read_srgb(p)
    assert r.format == "GIF" and r.image.shape == (8, 9, 3)
    assert np.allclose(r.image, 10 / 255)


def test_16bit_ppm_and_pgm(tmp_path):
    rgb = RNG.integers(0, 1024, (6, 5, 3), dtype=np.uint16)
    p = tmp_path / "a.ppm"
    p.write_bytes(b"P6\n5 6\n1023\n" + rgb.astype(">u2").tobytes())
    r = read_srgb(p)
    assert r.bit_depth == 10 and np.array_equal(r.image, rgb.astype(np.float32) / 1023)
    g = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    q = tmp_path / "a.pgm"
    q.write_bytes(b"P5\n5 6\n65535\n" + g.astype(">u2").tobytes())
    r = read_srgb(q)
    assert r.bit_depth == 16 and np.array_equal(r.image[..., 1], g.astype(np.float32) / 65535)


def test_decode_srgb_matches_read_srgb(tmp_path):
    p = tmp_path / "c.jpg"
    Image.fromarray(data.chelsea()).save(p, quality=90)
    blob = p.read_bytes()
    r1, r2 = read_srgb(p), decode_srgb(memoryview(blob), name="shard.tar:c.jpg")
    assert np.array_equal(r1.image, r2.image) and r2.path == "shard.tar:c.jpg"


# ---------------------------------------- bad inputs


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _bad_inputs(tmp_path):
    """(path, kwargs, expected reason) for every kind of bad file."""
    cases = []

    def put(name: str, blob: bytes):
        p = tmp_path / name
        p.write_bytes(blob)
        return p

    png, jpg = _png_bytes(ASTRO), _jpeg_bytes(ASTRO)
    cases.append((put("empty.png", b""), {}, "empty file"))
    cases.append((put("half.png", png[:len(png) // 2]), {}, "truncated"))
    cases.append((put("half.jpg", jpg[:len(jpg) // 2]), {}, "truncated"))
    cases.append((put("head.png", png[:20]), {}, "truncated"))
    cases.append((put("text.png", b"hello, this is not an image\n" * 10), {}, "not an image"))
    cases.append((tmp_path, {}, "unreadable"))
    cases.append((tmp_path / "missing.png", {}, "unreadable"))
    cases.append((put("big.png", png), {"max_pixels": 512 * 512 - 1}, "too large"))
    ok, buf16 = cv2.imencode(".png", _u16(CROP))
    b16 = buf16.tobytes()
    cases.append((put("half16.png", b16[:len(b16) // 2]), {}, "truncated"))
    tif = io.BytesIO()
    tifffile.imwrite(tif, _u16(CROP), photometric="rgb")
    cases.append((put("half16.tif", tif.getvalue()[: len(tif.getvalue()) // 2]), {}, "truncated"))
    i32 = tmp_path / "int32.tif"
    Image.fromarray(CAMERA.astype(np.int32) * 1000).save(i32)  # Pillow mode 'I': 32-bit signed samples
    cases.append((i32, {}, "unsupported mode"))
    return cases


def test_every_bad_input_gets_a_typed_picklable_error(tmp_path):
    for path, kwargs, reason in _bad_inputs(tmp_path):
        with pytest.raises(InputError) as info:
            read_srgb(path, **kwargs)
        e = info.value
        assert e.reason == reason, (path, e)
        assert e.path == str(path) and str(path) in str(e)
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is InputError and (back.path, back.reason, str(back)) == (e.path, e.reason, str(e))


def test_unreadable_and_too_large_details(tmp_path):
    with pytest.raises(InputError) as info:
        read_srgb(tmp_path / "missing.png")
    assert "FileNotFoundError" in info.value.detail and isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(InputError) as info:
        decode_srgb(_png_bytes(CROP), name="x.png", max_pixels=1000)
    assert info.value.detail == "200x120 = 24000 pixels > limit 1000" and "max_pixels" in info.value.hint


def test_decode_srgb_on_garbage_bytes():
    for blob, reason in ((bytes(range(256)) * 4, "not an image"), (b"", "empty file"),
                         (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),  # a chunk whose CRC is wrong
                         (b"\x89PNG\r\n\x1a\n" + b"\x00\x00", "truncated"),
                         (b"\xff\xd8\xff\xe0" + b"\x17" * 100, "truncated")):
        with pytest.raises(InputError) as info:
            decode_srgb(blob, name="blob.bin")
        assert info.value.reason == reason and info.value.path == "blob.bin"


def _garble_idat(png: bytes, garbage: bytes, fix_crc: bool) -> bytes:
    """Overwrite the start of the first IDAT payload; optionally recompute its CRC so only the decoder notices."""
    out = bytearray(png)
    idat = out.find(b"IDAT")
    (length,) = struct.unpack(">I", out[idat - 4:idat])
    out[idat + 20: idat + 20 + len(garbage)] = garbage
    if fix_crc:
        crc = zlib.crc32(bytes(out[idat:idat + 4 + length])) & 0xFFFFFFFF
        out[idat + 4 + length: idat + 8 + length] = struct.pack(">I", crc)
    return bytes(out)


def test_corrupt_data_is_wrapped_and_chained():
    garbage = RNG.integers(0, 256, 380, dtype=np.uint8).tobytes()
    # valid CRCs around a garbage deflate stream: the decoder's error is wrapped and chained
    with pytest.raises(InputError) as info:
        decode_srgb(_garble_idat(_png_bytes(CROP), garbage, fix_crc=True), name="bad.png")
    assert info.value.reason == "corrupt" and isinstance(info.value.__cause__, OSError)
    # a CRC mismatch is caught before any decoding
    with pytest.raises(InputError) as info:
        decode_srgb(_garble_idat(_png_bytes(CROP), garbage, fix_crc=False), name="bad.png")
    assert info.value.reason == "corrupt" and "CRC" in info.value.detail
    ok, buf = cv2.imencode(".png", _u16(CROP))
    for fix_crc in (True, False):
        with pytest.raises(InputError) as info:
            decode_srgb(_garble_idat(buf.tobytes(), bytes(380), fix_crc), name="bad16.png")
        assert info.value.reason == "corrupt" and "bad16.png" in str(info.value)


def test_pillow_bomb_error_becomes_too_large():
    """A header claiming 20000x20000 px trips Pillow's own hard limit at open; global limit is left alone."""
    before = Image.MAX_IMAGE_PIXELS
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    blob = b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + _chunk(b"IEND", b"")
    for max_pixels in (DEFAULT_MAX_PIXELS, 10**10):
        with pytest.raises(InputError) as info:
            decode_srgb(blob, name="bomb.png", max_pixels=max_pixels)
        assert info.value.reason == "too large"
    assert Image.MAX_IMAGE_PIXELS == before


def test_invalid_arguments():
    blob = _png_bytes(CROP)
    for kwargs in ({"alpha": "grey"}, {"max_pixels": 0}, {"max_pixels": True}, {"max_pixels": 1.5}):
        with pytest.raises(ConfigError):
            decode_srgb(blob, **kwargs)
    with pytest.raises(TypeError):
        decode_srgb("not bytes")
