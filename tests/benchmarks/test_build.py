"""Building the synthetic test sets end to end, rebuild determinism, verify, and the CLI's errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from benchmarks.bench import Bench, verify_benchmark
from benchmarks.builders import build_benchmark, iso_levels, load_recipe
from benchmarks.cli import main
from benchmarks.isp import develop_linear
from rawsynth.io import read_png16
from rawsynth.isp import ISPParams
from rawsynth.mns import Pattern

from .conftest import make_div2k, make_drealsr, make_realsr


def test_layout_of_a_built_benchmark(div2k_bench):
    b = Bench.load(div2k_bench)
    m = b.manifest
    assert b.keys == ["0801", "0802", "0803", "0804"] and b.has_gt and b.dataset == "div2k-val"
    assert m["complete"] is False and m["expected"] == 100 and len(m["missing"]) == 96
    assert m["recipe"]["crop"] == {"policy": "center", "size": 128}
    assert set(m["versions"]) >= {"rawsynth", "torch", "numpy", "opencv", "python"}
    expected_files = {f"{d}/{k}.{e}" for k in b.keys for d, e in
                      (("raw", "png"), ("raw", "json"), ("gt_linear", "png"), ("gt_srgb", "png"), ("lq_srgb", "png"))}
    assert set(m["files"]) == expected_files
    for k in b.keys:
        meta = b.meta(k)
        assert meta["mode"] == "rddm" and meta["key"] == k and meta["seed"] == 0 and meta["size"] == [128, 128]
        assert meta["source"]["path"] == f"DIV2K_valid_HR/{k}.png" and len(meta["source"]["sha256"]) == 64
        assert meta["crop"] == {"top": 16, "left": 36, "height": 128, "width": 128, "policy": "center",
                                "pad_bottom": 0, "pad_right": 0}  # centre of 160x200, even offsets
        dn = b.raw_dn(k)
        assert dn.dtype == np.uint16 and dn.shape == (128, 128) and dn.max() <= meta["sensor"]["white_level"]
        assert read_png16(b.path("gt_linear", k)).shape == (128, 128, 3)


def test_patterns_rotate_and_iso_is_spread(div2k_bench):
    b = Bench.load(div2k_bench)
    images = b.manifest["images"]
    assert [im["pattern"] for im in images] == ["RGGB", "BGGR", "GRBG", "GBRG"]
    assert [b.meta(im["key"])["pattern"] for im in images] == [im["pattern"] for im in images]
    isos = [im["iso"] for im in images]
    assert [b.meta(im["key"])["noise"]["iso"] for im in images] == isos
    assert isos == iso_levels(4, 100.0, 12000.0, 0, "div2k-val")
    # log-spaced bin midpoints over the profile's range: equal ratios between consecutive levels
    s = sorted(isos)
    ratios = [s[i + 1] / s[i] for i in range(3)]
    assert max(ratios) / min(ratios) < 1.01 and math.isclose(s[0], 100 * 120 ** (1 / 8), rel_tol=0.01)


def test_iso_levels_cover_the_range_evenly():
    lv = iso_levels(100, 100.0, 12000.0, 0, "div2k-val")
    assert len(set(lv)) == 100 and 100 < min(lv) < 110 and 11000 < max(lv) < 12000
    logs = np.log(sorted(lv))
    assert np.allclose(np.diff(logs), np.diff(logs).mean(), atol=0.01)
    assert lv != sorted(lv)  # handed out in a seeded order, not increasing with the key


def test_gt_srgb_is_ptp_of_gt_linear_and_raw_matches_its_pattern(div2k_bench):
    b = Bench.load(div2k_bench)
    for k in b.keys:
        meta = b.meta(k)
        isp = ISPParams.from_dict(meta["isp"])
        assert np.array_equal(b.gt_srgb(k), develop_linear(read_png16(b.path("gt_linear", k)), isp))
    # the mosaic holds each pixel's CFA colour of the degraded image: the green sites of the mosaic correlate with
    # the green channel of gt_linear far better than with red/blue
    k = b.keys[0]
    meta = b.meta(k)
    raw = b.raw_dn(k).astype(np.float64)
    lin = read_png16(b.path("gt_linear", k)).astype(np.float64)
    p = Pattern(meta["pattern"])
    (gy, gx) = p.offsets[1]
    g_sites = raw[gy::2, gx::2].ravel()
    corr = [np.corrcoef(g_sites, lin[gy::2, gx::2, c].ravel())[0, 1] for c in range(3)]
    assert corr[1] > 0.8


def test_rebuild_is_bit_identical_from_another_location(div2k_bench, div2k_src, tmp_path):
    moved = shutil.copytree(div2k_src, tmp_path / "elsewhere" / "DIV2K")
    out = tmp_path / "again"
    assert main(["build", "div2k-val", "--src", str(moved / "DIV2K_valid_HR"), "--out", str(out), "--crop", "128",
                 "--allow-partial", "--no-progress"]) == 0
    a = json.loads((div2k_bench / "manifest.json").read_text())
    b = json.loads((out / "manifest.json").read_text())
    assert a["files"] == b["files"] and a["images"] == b["images"] and a["recipe"] == b["recipe"]
    for rel in a["files"]:
        assert (div2k_bench / rel).read_bytes() == (out / rel).read_bytes()


def test_verify_finds_changed_missing_and_unlisted_files(bench_copy, capsys):
    assert verify_benchmark(bench_copy).ok
    assert main(["verify", str(bench_copy)]) == 0
    assert "OK, 20 files match" in capsys.readouterr().out
    raw = bench_copy / "raw" / "0802.png"
    data = bytearray(raw.read_bytes())
    data[-20] ^= 1
    raw.write_bytes(bytes(data))
    (bench_copy / "gt_srgb" / "0803.png").unlink()
    (bench_copy / "lq_srgb" / "stray.png").write_bytes(b"x")
    assert main(["verify", str(bench_copy)]) == 1
    out = capsys.readouterr().out
    assert "changed: raw/0802.png" in out and "missing: gt_srgb/0803.png" in out
    assert "not in manifest: lq_srgb/stray.png" in out and "3 problem(s)" in out


def test_out_dir_rules(div2k_src, bench_copy, tmp_path, capsys):
    args = ["build", "div2k-val", "--src", str(div2k_src), "--crop", "64", "--allow-partial"]
    assert main([*args, "--out", str(bench_copy)]) == 2
    assert "already holds a benchmark (manifest.json); pass --overwrite" in capsys.readouterr().err
    (bench_copy / "leaderboard.json").write_text('{"entries": []}')
    assert main([*args, "--out", str(bench_copy), "--overwrite"]) == 0
    assert (bench_copy / "leaderboard.json").exists()  # scores are kept
    assert Bench.load(bench_copy).meta("0801")["size"] == [64, 64] and verify_benchmark(bench_copy).ok
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert main([*args, "--out", str(other), "--overwrite"]) == 2
    assert "not a benchmark folder" in capsys.readouterr().err and (other / "thesis.tex").exists()


def test_cli_errors_are_one_line_with_the_fix(div2k_src, tmp_path, capsys):
    assert main(["build", "div2k-val", "--src", str(div2k_src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks build: error: ") and "Traceback" not in err
    assert "4 of 100 images found" in err and "0805.png … 0900.png (96 files)" in err and "--allow-partial" in err
    assert main(["build", "realsr", "--src", str(div2k_src), "--out", str(tmp_path / "o")]) == 2
    assert "not the RealSR layout" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["build", "div2k-val", "--src", str(div2k_src), "--out", str(tmp_path), "--crop", "huge"])
    assert e.value.code == 2


def test_too_small_source_is_a_clear_error(tmp_path, capsys):
    make_div2k(tmp_path / "src", [801], h=64, w=64)
    assert main(["build", "div2k-val", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o"),
                 "--allow-partial"]) == 2
    assert "0801.png: too small (64x64 < crop 512x512). Fix: use a smaller --crop" in capsys.readouterr().err


def test_realsr_and_drealsr_builds_with_dng(tmp_path):
    from rawsynth.io import read_raw

    make_realsr(tmp_path / "rs", cameras=(("Canon", (1,)), ("Nikon", (2,))), h=96, w=128)
    s = build_benchmark(load_recipe("realsr", crop={"policy": "full"}), tmp_path / "rs", tmp_path / "b1",
                        allow_partial=True, save_dng=True)
    b = Bench.load(s.out)
    assert b.keys == ["Canon_001", "Nikon_002"] and b.meta("Canon_001")["size"] == [96, 128]
    dng = read_raw(b.path("dng", "Canon_001"))
    assert np.array_equal(dng.mosaic, b.raw_dn("Canon_001")) and dng.pattern.value == b.meta("Canon_001")["pattern"]
    assert verify_benchmark(s.out).ok
    make_drealsr(tmp_path / "dr", stems=("DSC_0001", "P1000003"), h=70, w=90)
    s = build_benchmark(load_recipe("drealsr", crop={"policy": "center", "size": 64}), tmp_path / "dr",
                        tmp_path / "b2", allow_partial=True)
    assert Bench.load(s.out).keys == ["DSC_0001", "P1000003"] and not s.complete
    assert "2 *_x4.png file(s) found, 93 expected" in s.line()


def test_unexpected_failures_are_one_line(monkeypatch, div2k_src, tmp_path, capsys):
    import benchmarks.builders as builders

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(builders, "build_benchmark", boom)
    assert main(["build", "div2k-val", "--src", str(div2k_src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: kaboom" in err and "BENCHMARKS_TRACEBACK=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("BENCHMARKS_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["build", "div2k-val", "--src", str(div2k_src), "--out", str(tmp_path / "o")])
