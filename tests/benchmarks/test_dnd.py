"""The DND reader and builder, on a small file written in DND's HDF5 (MATLAB v7.3) layout by the test."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench import Bench, verify_benchmark
from benchmarks.cli import main
from benchmarks.dnd import build_dnd, read_dnd_info, read_dnd_noisy
from benchmarks.errors import LayoutError
from benchmarks.scoring.metrics import parse_metrics
from rawsynth.errors import ConfigError
from rawsynth.isp import rgb2cam_from_xyz2cam
from rawsynth.mns import Pattern, mosaic

from .conftest import make_dnd, photo

BOXES = np.array([[1, 1, 96, 96], [34, 51, 129, 146]])  # MATLAB: 1-based inclusive [row1, col1, row2, col2]


def _noisy(i: int, pattern: str) -> np.ndarray:
    import torch

    rgb = torch.from_numpy(photo(i, 192, 256)).permute(2, 0, 1)[None].float() / 255
    m = mosaic(rgb ** 2.2, Pattern(pattern))[0, 0].numpy()
    rng = np.random.default_rng(i)
    return np.clip(m + rng.normal(0, 0.01, m.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def dnd_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnd") / "dnd_2017"
    imgs = [_noisy(0, "GRBG"), _noisy(1, "RGGB")]
    make_dnd(root, imgs, [BOXES, BOXES], ["GRBG", "RGGB"], nlf=(1.5e-3, 3e-6), neutral=(0.5, 1.0, 0.625))
    return root, imgs


def test_reader_undoes_matlab_column_order(dnd_src):
    root, imgs = dnd_src
    assert np.array_equal(read_dnd_noisy(root / "images_raw" / "0001.mat"), imgs[0])
    info = read_dnd_info(root / "info.mat")
    assert len(info) == 2
    a = info[0]
    assert a.pattern is Pattern.GRBG and info[1].pattern is Pattern.RGGB
    assert a.boxes.tolist() == [[0, 0, 96, 96], [33, 50, 129, 146]]  # 0-based, end-exclusive
    assert a.nlf == (1.5e-3, 3e-6)
    assert a.xyz2cam[0].tolist() == [1.0234, -0.2969, -0.2266]
    p = a.isp()
    assert p.red_gain == 2.0 and p.blue_gain == 1.6 and p.rgb_gain == 1.0
    assert np.allclose(p.rgb2cam, rgb2cam_from_xyz2cam(a.xyz2cam))
    assert a.sigma_raw.shape == (2, 2, 2) and a.sigma_raw[1].tolist() == [[0.004, 0.005], [0.006, 0.007]]


def test_build_cuts_boxes_with_their_own_pattern(dnd_src, tmp_path):
    root, imgs = dnd_src
    s = build_dnd(root.parent, tmp_path / "dnd", recipe=_recipe(2, 2))  # the folder holding dnd_2017/
    assert s.complete and s.images == 4
    b = Bench.load(s.out)
    assert b.keys == ["0001_01", "0001_02", "0002_01", "0002_02"] and not b.has_gt
    assert not (s.out / "gt_srgb").exists() and verify_benchmark(s.out).ok
    m = b.meta("0001_02")
    assert m["crop"] == {"top": 33, "left": 50, "height": 96, "width": 96, "policy": "dnd-box"}
    assert m["pattern"] == Pattern.GRBG.shifted(33, 50).value == "BGGR"
    assert m["dnd"]["pattern"] == "GRBG" and m["noise"]["lambda_shot"] == 1.5e-3
    assert m["noise"]["sigma_raw"] == [[0.004, 0.005], [0.006, 0.007]]  # per box and crop phase, as DND's kit
    sensor = m["sensor"]
    x = (b.raw_dn("0001_02").astype(np.float64) - sensor["black_level"]) / (sensor["white_level"] -
                                                                           sensor["black_level"])
    assert np.abs(x - imgs[0][33:129, 50:146]).max() <= 0.5 / (sensor["white_level"] - sensor["black_level"]) + 1e-9


def _recipe(images, boxes):
    from benchmarks.dnd import DndRecipe

    return DndRecipe(images=images, boxes_per_image=boxes)


def test_missing_images_and_wrong_folders(dnd_src, tmp_path, capsys):
    root, _ = dnd_src
    with pytest.raises(LayoutError, match=r"missing images_raw/0003\.mat"):
        build_dnd(root, tmp_path / "a")  # the bundled recipe expects 50 images
    s = build_dnd(root, tmp_path / "b", allow_partial=True)
    assert not s.complete and s.images == 4  # only the two boxes each image has
    (tmp_path / "srgb" / "images_srgb").mkdir(parents=True)
    assert main(["build", "dnd", "--src", str(tmp_path / "srgb"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "not the DND layout" in err and "images_srgb holds the sRGB version" in err
    assert main(["build", "dnd", "--src", str(root), "--out", str(tmp_path / "d"), "--crop", "64"]) == 2
    assert "do not apply" in capsys.readouterr().err


def test_no_reference_metrics_only(dnd_src, tmp_path, capsys):
    root, _ = dnd_src
    out = build_dnd(root, tmp_path / "dnd", recipe=_recipe(2, 2)).out
    assert parse_metrics(None, has_gt=False) == ["niqe", "musiq", "clipiqa"]
    with pytest.raises(ConfigError, match="psnr, fid need ground truth"):
        parse_metrics("psnr,fid,niqe", has_gt=False)
    assert main(["isp", "--bench", str(out), "--out", str(tmp_path / "isp")]) == 0
    assert sorted(p.name for p in (tmp_path / "isp").glob("*.png"))[0] == "0001_01.png"
    assert main(["score", "--bench", str(out), "--pred", str(tmp_path / "isp"), "--method", "x",
                 "--metrics", "psnr"]) == 2
    assert "need ground truth" in capsys.readouterr().err
    assert main(["report", "--bench", str(out), "--out", str(tmp_path / "r.html"), "--crops", "1"]) == 0
    doc = (tmp_path / "r.html").read_text()
    assert "No method scored yet" in doc and "0001_01" in doc and "GT (gt_srgb)" not in doc
