"""Inputs of ``rddm restore`` (rddm.restore.inputs): DNG through rawpy, 16-bit PNG + JSON, shards, folders, and a
typed error for every bad file (truncated, not RAW, X-Trans / Quad Bayer, missing metadata) without losing the
others."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import tifffile

from rawsynth.errors import InputError, UnsupportedCFAError
from rawsynth.io import write_dng, write_png16
from rawsynth.isp import fixed_isp_params
from rawsynth.mns import Pattern, SensorParams
from rawsynth.shards import encode_sample, write_shard
from rddm.restore.inputs import InputSource, find_inputs, from_meta, read_source

SENSOR = SensorParams(12, 256, 4095)
ISP = fixed_isp_params(rgb_gain=1.5, red_gain=2.0, blue_gain=1.6)

QUAD_BAYER = (0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1, 2, 2)
XTRANS = (1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1)


def mosaic_dn(h=40, w=56, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(200, 4096, (h, w)).astype(np.uint16)


def meta(key: str, pattern: str = "GBRG") -> dict:
    return {"key": key, "seed": 0, "mode": "rddm", "pattern": pattern, "sensor": SENSOR.to_dict(),
            "isp": ISP.to_dict(), "noise": {}, "degradation": None, "source": None, "crop": None, "version": "0"}


def write_png_json(folder, key, dn, pattern="GBRG"):
    write_png16(folder / f"{key}.png", dn)
    (folder / f"{key}.json").write_text(json.dumps(meta(key, pattern)))


def write_cfa_dng(path, dn, dim, cfa):
    """A DNG with an arbitrary CFA repeat pattern (rawsynth's writer only writes Bayer)."""
    tags = [(33421, "H", 2, dim, True), (33422, "B", len(cfa), bytes(cfa), True),
            (50706, "B", 4, bytes((1, 4, 0, 0)), True), (50707, "B", 4, bytes((1, 1, 0, 0)), True),
            (271, "s", 0, "x", True), (272, "s", 0, "y", True), (50714, "I", 1, 256, True),
            (50717, "I", 1, 4095, True)]
    tifffile.imwrite(path, dn, photometric=32803, compression=None, metadata=None, subfiletype=0, software=False,
                     extratags=tags)


def one(source: InputSource):
    items = list(read_source(source))
    assert len(items) == 1
    return items[0]


def expected_raw(dn: np.ndarray) -> np.ndarray:
    return ((dn.astype(np.float64) - SENSOR.black_level) / SENSOR.range).astype(np.float32)


def test_dng_through_rawpy(tmp_path):
    dn = mosaic_dn()
    write_dng(tmp_path / "cam.dng", dn, "BGGR", SENSOR, ISP, iso=400)
    (src,) = find_inputs([tmp_path / "cam.dng"]).sources
    assert src.kind == "raw"
    item = one(src)
    assert item.name == "cam" and item.pattern is Pattern.BGGR
    np.testing.assert_allclose(item.raw, expected_raw(dn), rtol=0, atol=1e-7)
    # white balance, colour matrix and brightness come back from the DNG's tags
    assert item.isp.red_gain == pytest.approx(ISP.red_gain, rel=1e-6)
    assert item.isp.blue_gain == pytest.approx(ISP.blue_gain, rel=1e-6)
    assert item.isp.rgb_gain == pytest.approx(ISP.rgb_gain, rel=1e-6)
    np.testing.assert_allclose(item.isp.cam2rgb, ISP.cam2rgb, atol=1e-5)


def test_png_with_json_is_exact(tmp_path):
    dn = mosaic_dn(seed=1)
    write_png_json(tmp_path, "img_01", dn, "GRBG")
    (src,) = find_inputs([tmp_path / "img_01.png"]).sources
    item = one(src)
    assert src.kind == "png16" and item.name == "img_01" and item.pattern is Pattern.GRBG and item.isp == ISP
    np.testing.assert_array_equal(item.raw, (dn.astype(np.float32) - np.float32(256)) / np.float32(3839))
    assert item.raw.min() < 0  # values under the black level are kept (not clipped, as in training)


def test_shard_yields_every_sample_and_keeps_them_when_cut_short(tmp_path):
    dns = [mosaic_dn(32, 32, seed=s) for s in range(3)]
    samples = [encode_sample(f"k{i}", dn, np.zeros((32, 32, 3), np.float32), meta(f"k{i}", p))
               for i, (dn, p) in enumerate(zip(dns, ["RGGB", "BGGR", "GBRG"], strict=True))]
    write_shard(tmp_path / "s.tar", samples)
    (src,) = find_inputs([tmp_path]).sources
    items = list(read_source(src))
    assert src.kind == "shard" and [i.name for i in items] == ["k0", "k1", "k2"]
    assert [i.pattern.value for i in items] == ["RGGB", "BGGR", "GBRG"]
    for item, dn in zip(items, dns, strict=True):
        np.testing.assert_array_equal(item.raw, expected_raw(dn))
        assert item.source.endswith(f"s.tar:{item.name}") and item.isp == ISP
    data = (tmp_path / "s.tar").read_bytes()
    with tarfile.open(tmp_path / "s.tar") as tf:  # cut inside k2's first member: k0 and k1 are whole
        k2 = next(m for m in tf if m.name.startswith("k2."))
    (tmp_path / "cut.tar").write_bytes(data[: k2.offset_data + k2.size // 2])
    got = list(read_source(InputSource(tmp_path / "cut.tar", "shard")))
    assert [i.name for i in got[:-1]] == ["k0", "k1"]
    assert isinstance(got[-1], InputError) and got[-1].reason == "truncated"


def test_folder_expansion_sorted_with_benchmark_duplicates_resolved(tmp_path):
    write_png_json(tmp_path, "b", mosaic_dn())
    write_dng(tmp_path / "b.dng", mosaic_dn(), "GBRG", SENSOR, ISP)  # a benchmark built with --dng
    write_dng(tmp_path / "a.DNG", mosaic_dn(), "RGGB", SENSOR, ISP)
    write_dng(tmp_path / ".hidden.dng", mosaic_dn(), "RGGB", SENSOR, ISP)
    (tmp_path / "notes.txt").write_text("x")
    write_png16(tmp_path / "gt.png", np.zeros((4, 4, 3), np.uint16))  # a PNG without JSON: not an input
    write_shard(tmp_path / "c.tar", [encode_sample("k", mosaic_dn(32, 32), np.zeros((32, 32, 3), np.float32),
                                                   meta("k"))])
    found = find_inputs([tmp_path])
    assert [(s.path.name, s.kind) for s in found.sources] == [("a.DNG", "raw"), ("b.png", "png16"),
                                                               ("c.tar", "shard")]
    assert not found.errors and len(found.notes) == 1 and "b.dng skipped" in found.notes[0]


def test_missing_paths_and_empty_folders_are_errors_not_exceptions(tmp_path):
    (tmp_path / "empty").mkdir()
    write_dng(tmp_path / "ok.dng", mosaic_dn(), "RGGB", SENSOR, ISP)
    found = find_inputs([tmp_path / "nope.dng", tmp_path / "empty", tmp_path / "ok.dng"])
    assert [s.path.name for s in found.sources] == ["ok.dng"]
    assert [e.reason for e in found.errors] == ["unreadable", "no inputs"]


def _error(path) -> InputError:
    (src,) = find_inputs([path]).sources
    err = one(src)
    assert isinstance(err, InputError), err
    assert str(path) in str(err)  # every message names the file
    return err


def test_truncated_dng(tmp_path):
    write_dng(tmp_path / "full.dng", mosaic_dn(), "RGGB", SENSOR, ISP)
    data = (tmp_path / "full.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[: len(data) // 2])
    assert _error(tmp_path / "cut.dng").reason == "truncated"


def test_jpeg_renamed_dng_is_not_raw(tmp_path):
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    (tmp_path / "photo.dng").write_bytes(buf.tobytes())
    (tmp_path / "photo.jpg").write_bytes(buf.tobytes())
    assert _error(tmp_path / "photo.dng").reason == "not a RAW file"
    assert _error(tmp_path / "photo.jpg").reason == "not a RAW file"  # explicit non-RAW files are tried, and fail


@pytest.mark.parametrize("dim,cfa,what", [((6, 6), XTRANS, "6x6 CFA"), ((4, 4), QUAD_BAYER, "4x4 CFA")])
def test_unsupported_cfa(tmp_path, dim, cfa, what):
    write_cfa_dng(tmp_path / "x.dng", mosaic_dn(48, 48), dim, cfa)
    err = _error(tmp_path / "x.dng")
    assert isinstance(err, UnsupportedCFAError) and what in str(err) and err.hint


def test_empty_file_and_png_without_metadata(tmp_path):
    (tmp_path / "zero.nef").write_bytes(b"")
    assert _error(tmp_path / "zero.nef").reason == "empty file"
    write_png16(tmp_path / "lone.png", mosaic_dn())
    err = _error(tmp_path / "lone.png")
    assert err.reason == "missing metadata" and "lone.json" in str(err)


def test_bad_metadata_names_the_key(tmp_path):
    m = meta("k")
    del m["sensor"]
    with pytest.raises(InputError, match="'sensor'"):
        from_meta("k", "k.png", mosaic_dn(), m, "k.json")
    m = meta("k", pattern="RGBG")
    with pytest.raises(InputError, match="bad metadata"):
        from_meta("k", "k.png", mosaic_dn(), m, "k.json")
    with pytest.raises(InputError, match="even"):
        from_meta("k", "k.png", mosaic_dn(41, 56), meta("k"), "k.json")
