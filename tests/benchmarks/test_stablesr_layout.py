"""StableSR's 512x512 test folders (RealSR 100, DRealSR 93, DIV2K_V2_val 3000) are recognised beside the official
layouts, from names and sizes; the choice is recorded in the manifest and shown by ``table``/``report``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bench import Bench
from benchmarks.builders import detect_layout, layout_recipe_names, load_recipe, scan_layout
from benchmarks.builders.recipe import Recipe
from benchmarks.cli import main
from benchmarks.errors import LayoutError

from .conftest import make_realsr, photo, write_rgb


def _crop512(i: int) -> np.ndarray:
    """A 512x512 crop of a scikit-image photo (cycled, shifted per image so that images differ)."""
    import cv2

    img = cv2.resize(photo(i, 1000, 1000), (600, 600), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[i % 7: i % 7 + 512, (3 * i) % 80: (3 * i) % 80 + 512])


def make_stablesr_realsr(folder, n_canon=50, n_nikon=50, size=512):
    """StableSR's RealSRVal_crop128/test_HR: 512x512 HR crops named like the LR files (Canon_001_LR4.png)."""
    names = [f"Canon_{i:03d}_LR4.png" for i in range(1, n_canon + 1)] + \
            [f"Nikon_{i:03d}_LR4.png" for i in range(1, n_nikon + 1)]
    for j, n in enumerate(names):
        img = _crop512(j)
        write_rgb(folder / n, img if size == 512 else img[:size, :size])
    return folder


@pytest.fixture(scope="module")
def stablesr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stablesr") / "StableSR_testsets"
    make_stablesr_realsr(root / "RealSRVal_crop128" / "test_HR")
    lr = root / "RealSRVal_crop128" / "test_LR"
    write_rgb(lr / "Canon_001_LR4.png", np.zeros((128, 128, 3), np.uint8))
    return root


@pytest.mark.parametrize("name", ["realsr", "drealsr", "div2k-val"])
def test_bundled_layout_recipes(name):
    official, stablesr = (load_recipe(n) for n in layout_recipe_names(name))
    assert official.layout == "official" and stablesr.layout == "stablesr-512"
    assert stablesr.name == official.name == name and Recipe.from_dict(stablesr.to_dict()) == stablesr
    assert stablesr.expected_count == {"realsr": 100, "drealsr": 93, "div2k-val": 3000}[name]
    assert stablesr.groups[0].size == (512, 512) and stablesr.crop == {"policy": "center", "size": 512}


def test_stablesr_realsr_found_from_every_level(stablesr_root):
    hr = stablesr_root / "RealSRVal_crop128" / "test_HR"
    for src in (stablesr_root, stablesr_root / "RealSRVal_crop128", hr, stablesr_root.parent):
        recipe, scan = detect_layout("realsr", src)
        assert recipe.layout == "stablesr-512" and scan.complete, src
        assert len(scan.images) == 100 and scan.images[0].key == "Canon_001" and scan.images[-1].key == "Nikon_050"
    # the official layout is still taken first when present
    off = make_realsr(stablesr_root.parent / "official", cameras=(("Canon", (1,)),), h=16, w=16)
    recipe, scan = detect_layout("realsr", off)
    assert recipe.layout == "official" and len(scan.images) == 1


def test_a_flat_folder_of_crops_with_any_name(tmp_path):
    src = make_stablesr_realsr(tmp_path / "my_realsr_hr", n_canon=2, n_nikon=1)
    recipe, scan = detect_layout("realsr", src)
    assert recipe.layout == "stablesr-512" and [s.key for s in scan.images] == ["Canon_001", "Canon_002",
                                                                                  "Nikon_001"]
    assert scan.missing == [".: 3 Canon_*.png|Nikon_*.png file(s) found, 100 expected"]
    assert scan.images[0].name == "my_realsr_hr/Canon_001_LR4.png"


def test_sizes_tell_crops_from_lr_images(tmp_path):
    """The same names at 128x128 are StableSR's LR crops: refused, with a hint naming both possibilities."""
    lr = make_stablesr_realsr(tmp_path / "test_LR", n_canon=3, n_nikon=0, size=128)
    recipe, scan = detect_layout("realsr", lr)
    assert scan.images == [] and "3 file(s) not 512x512 (e.g. Canon_001_LR4.png: 128x128)" in scan.missing[0]
    with pytest.raises(LayoutError) as e:
        main_err = scan_layout(lr, load_recipe("realsr"))  # noqa: F841 - official recipe alone
    assert "StableSR's 512x512 HR test crops" in str(e.value) and "realsr-stablesr" in str(e.value)


def test_drealsr_stablesr_names(tmp_path):
    src = tmp_path / "DrealSRVal_crop128" / "test_HR"
    for j, n in enumerate(["Canon_10_x1.png", "Nikon_5_x1.png", "Sony_112_x1.png"]):
        write_rgb(src / n, _crop512(j))
    recipe, scan = detect_layout("drealsr", tmp_path)
    assert recipe.layout == "stablesr-512" and [s.key for s in scan.images] == ["Canon_10", "Nikon_5", "Sony_112"]
    assert scan.missing[-1] == "DrealSRVal_crop128/test_HR: 3 *_x1.png file(s) found, 93 expected"


def test_div2k_v2_val_crops(tmp_path):
    src = tmp_path / "DIV2K_V2_val" / "gt"
    for j, n in enumerate(["0801_pch_00001.png", "0801_pch_00002.png"]):
        write_rgb(src / n, _crop512(j))
    recipe, scan = detect_layout("div2k-val", tmp_path / "DIV2K_V2_val")
    assert recipe.layout == "stablesr-512" and [s.key for s in scan.images] == ["0801_pch_00001", "0801_pch_00002"]


def test_neither_layout_names_both(tmp_path):
    (tmp_path / "empty").mkdir()
    write_rgb(tmp_path / "empty" / "photo.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(LayoutError) as e:
        detect_layout("realsr", tmp_path / "empty")
    msg = str(e.value)
    assert "none of the 2 known layouts" in msg and "Canon/Test/4/Canon_001_HR.png" in msg
    assert "RealSRVal_crop128/test_HR/Canon_*.png|Nikon_*.png (100 files of 512x512)" in msg


def test_build_100_crops_verify_and_rebuild_identical(stablesr_root, tmp_path, capsys):
    """The issue's check: a StableSR-style folder of 100 crops builds (crop 32 here, for speed: the layout is
    recognised from the 512x512 files either way), verifies, and rebuilds to the same bytes."""
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        rc = main(["build", "realsr", "--src", str(stablesr_root), "--out", str(out), "--crop", "32",
                   "--no-progress"])
        assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "benchmarks build realsr [StableSR 512x512 test crops]: 100 images (100 expected)" in out
    assert main(["verify", str(a)]) == 0
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["files"] == mb["files"] and len(ma["images"]) == 100 and ma["complete"]
    assert ma["source"]["layout"] == "stablesr-512" and ma["recipe"]["source"]["layout"] == "stablesr-512"
    assert ma["images"][0]["source"] == "RealSRVal_crop128/test_HR/Canon_001_LR4.png"
    bench = Bench.load(a)
    assert bench.keys[:2] == ["Canon_001", "Canon_002"] and bench.layout_title == "StableSR 512x512 test crops"
    from benchmarks.report.table import render_markdown

    assert "### RealSR (100 images, StableSR 512x512 test crops)" in render_markdown([a])
