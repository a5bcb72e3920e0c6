"""Recipes and the recognition of the official dataset layouts."""

from __future__ import annotations

import pytest

from benchmarks.builders import find_root, load_recipe, recipe_names, scan_layout
from benchmarks.builders.recipe import Recipe
from benchmarks.errors import LayoutError
from rawsynth.errors import ConfigError

from .conftest import make_div2k, make_drealsr, make_realsr, write_rgb


def _touch_png(path, size=8):
    import numpy as np

    return write_rgb(path, np.zeros((size, size, 3), np.uint8))


@pytest.mark.parametrize("name", recipe_names())
def test_bundled_recipes_load_and_round_trip(name):
    r = load_recipe(name)
    assert r.name == name and r.crop == {"policy": "center", "size": 512}
    assert Recipe.from_dict(r.to_dict()) == r
    assert r.expected_count == {"div2k-val": 100, "realsr": 100, "drealsr": 93}[name]
    assert r.iso_bounds() == (100.0, 12000.0)  # the default noise profile's range


def test_recipe_errors_name_the_problem(tmp_path):
    d = load_recipe("div2k-val").to_dict()
    with pytest.raises(ConfigError, match="unknown recipe key"):
        Recipe.from_dict({**d, "crop_size": 5})
    with pytest.raises(ConfigError, match="crop.size must be a positive multiple of 4"):
        load_recipe("div2k-val", crop={"policy": "center", "size": 130})
    with pytest.raises(ConfigError, match="seed must be an integer"):
        load_recipe("div2k-val", seed="0")
    with pytest.raises(ConfigError, match="unknown benchmark 'div2k'"):
        load_recipe("div2k")
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\ntitle: X\nsource: {groups: [{folder: a}]}\n")
    with pytest.raises(ConfigError, match="either `names`"):
        load_recipe(bad)


def test_div2k_complete_set_is_recognised(tmp_path):
    root = tmp_path / "downloads" / "DIV2K"
    for i in range(801, 901):
        _touch_png(root / "DIV2K_valid_HR" / f"{i:04d}.png")
    _touch_png(root / "DIV2K_valid_HR" / "0001.png")  # a training image mixed in
    (root / "DIV2K_valid_HR" / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    r = load_recipe("div2k-val")
    for src in (root, root / "DIV2K_valid_HR", root.parent):  # the root, the HR folder, one level up
        scan = scan_layout(src, r)
        assert scan.root == root and scan.complete
        assert [s.key for s in scan.images][:2] == ["0801", "0802"] and len(scan.images) == 100
        assert scan.images[0].name == "DIV2K_valid_HR/0801.png"
        assert scan.extra == ["DIV2K_valid_HR/0001.png"]


def test_div2k_missing_files_are_listed_precisely(tmp_path):
    make_div2k(tmp_path, [801, 802, 805], h=8, w=8)
    scan = scan_layout(tmp_path, load_recipe("div2k-val"))
    assert not scan.complete and len(scan.missing) == 97
    assert scan.missing[:2] == ["DIV2K_valid_HR/0803.png", "DIV2K_valid_HR/0804.png"]
    assert scan.missing_runs == ["DIV2K_valid_HR/0803.png … 0804.png (2 files)",
                                 "DIV2K_valid_HR/0806.png … 0900.png (95 files)"]


def test_wrong_folders_are_refused_with_the_expected_layout(tmp_path):
    r = load_recipe("div2k-val")
    with pytest.raises(LayoutError, match="no such folder"):
        find_root(tmp_path / "nope", r)
    lr = tmp_path / "DIV2K_valid_LR_bicubic" / "X4"
    _touch_png(lr / "0801x4.png")
    with pytest.raises(LayoutError) as e:
        find_root(lr, r)
    msg = str(e.value)
    assert "not the DIV2K-Val layout" in msg and "DIV2K_valid_HR/0801.png … 0900.png" in msg
    assert "0801x4.png" in msg and "another split" in msg and "Point --src at the folder that holds" in msg


def test_realsr_layout_with_lr_neighbours(tmp_path):
    make_realsr(tmp_path, cameras=(("Canon", (1, 2)), ("Nikon", (1,))), h=16, w=16)
    _touch_png(tmp_path / "RealSR(V3)" / "Nikon" / "Test" / "4" / "Nikon_003_LR4.png")  # LR without its HR
    r = load_recipe("realsr")
    scan = scan_layout(tmp_path, r)  # the folder holding RealSR(V3)/
    assert scan.root.name == "RealSR(V3)"
    assert [s.key for s in scan.images] == ["Canon_001", "Canon_002", "Nikon_001"]
    assert scan.extra == []  # LR4 files are expected neighbours
    assert "Nikon/Test/4/Nikon_003_HR.png" in scan.missing and len(scan.missing) == 97
    assert scan_layout(tmp_path / "RealSR(V3)" / "Canon" / "Test" / "4", r).root.name == "RealSR(V3)"
    lr_only = tmp_path / "lr_only"
    _touch_png(lr_only / "Canon_001_LR4.png")
    with pytest.raises(LayoutError, match="neighbours"):  # LR files alone are not the HR set
        scan_layout(lr_only, r)


def test_drealsr_is_checked_by_count(tmp_path):
    make_drealsr(tmp_path, stems=("DSC_0001", "IMG_0002"), h=16, w=16)
    _touch_png(tmp_path / "Test_x4" / "test_HR" / "notes.png")
    scan = scan_layout(tmp_path, load_recipe("drealsr"))
    assert [s.key for s in scan.images] == ["DSC_0001", "IMG_0002"]
    assert scan.missing == ["Test_x4/test_HR: 2 *_x4.png file(s) found, 93 expected"]
    assert scan.extra == ["Test_x4/test_HR/notes.png"]


def test_duplicate_keys_are_refused(tmp_path):
    import yaml

    d = load_recipe("drealsr").to_dict()
    d["source"]["groups"].append({"folder": "Test_x4/other", "glob": "*_x4.png", "count": 1})
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    make_drealsr(tmp_path / "src", stems=("DSC_0001",), h=16, w=16)
    _touch_png(tmp_path / "src" / "Test_x4" / "other" / "DSC_0001_x4.png")
    with pytest.raises(LayoutError, match="same image key 'DSC_0001'"):
        scan_layout(tmp_path / "src", load_recipe(p))
