"""Small copies of the official dataset layouts, made from scikit-image's bundled photos, and shared benchmarks.

Layouts (as documented in docs/benchmarks.md):
  DIV2K:   DIV2K_valid_HR/0801.png …
  RealSR:  RealSR(V3)/{Canon,Nikon}/Test/4/{Camera}_NNN_HR.png next to {Camera}_NNN_LR4.png
  DRealSR: Test_x4/test_HR/STEM_x4.png (LR: Test_x4/test_LR/STEM_x1.png)
  DND:     info.mat + images_raw/NNNN.mat, MATLAB v7.3 (HDF5) with object references, column-major arrays
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photo(i: int, h: int = 160, w: int = 200) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB top-left crop of the i-th bundled photo (cycled)."""
    return np.ascontiguousarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()[:h, :w])


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def make_div2k(root: Path, indices=range(801, 805), h: int = 160, w: int = 200) -> Path:
    for j, i in enumerate(indices):
        write_rgb(root / "DIV2K_valid_HR" / f"{i:04d}.png", photo(j, h, w))
    return root


def make_realsr(root: Path, cameras=(("Canon", (1, 2)), ("Nikon", (1,))), h: int = 96, w: int = 128) -> Path:
    base = root / "RealSR(V3)"
    j = 0
    for cam, idx in cameras:
        for i in idx:
            hr = photo(j, h, w)
            write_rgb(base / cam / "Test" / "4" / f"{cam}_{i:03d}_HR.png", hr)
            write_rgb(base / cam / "Test" / "4" / f"{cam}_{i:03d}_LR4.png", cv2.resize(hr, (w // 4, h // 4)))
            j += 1
    return root


def make_drealsr(root: Path, stems=("DSC_0001", "IMG_0002", "P1000003"), h: int = 96, w: int = 128) -> Path:
    for j, s in enumerate(stems):
        hr = photo(j, h, w)
        write_rgb(root / "Test_x4" / "test_HR" / f"{s}_x4.png", hr)
        write_rgb(root / "Test_x4" / "test_LR" / f"{s}_x1.png", cv2.resize(hr, (w // 4, h // 4)))
    return root


CFA_CODES = {"R": 1, "G": 2, "B": 3}


def make_dnd(root: Path, images: list[np.ndarray], boxes: list[np.ndarray], patterns: list[str],
             nlf=(1e-3, 2e-6), xyz2cam=None, neutral=(0.5, 1.0, 0.6), sigma=None) -> Path:
    """Write a DND-like download: ``images`` are ``(H, W)`` float noisy mosaics, ``boxes`` ``(N, 4)`` 1-based
    inclusive ``[row1, col1, row2, col2]`` (as MATLAB), ``patterns`` the full images' CFA names."""
    import h5py

    xyz2cam = np.asarray(xyz2cam if xyz2cam is not None else
                         [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]])
    (root / "images_raw").mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        with h5py.File(root / "images_raw" / f"{i + 1:04d}.mat", "w") as f:
            f.create_dataset("Inoisy", data=np.asarray(img, np.float32).T)  # MATLAB is column-major
    with h5py.File(root / "info.mat", "w") as f:
        refs, info = f.create_group("#refs#"), f.create_group("info")
        lists = {"boundingboxes": [], "nlf": [], "camera": [], "sigma_raw": []}
        for i, (b, pat) in enumerate(zip(boxes, patterns, strict=True)):
            lists["boundingboxes"].append(refs.create_dataset(f"bb{i}", data=np.asarray(b, np.float64).T).ref)
            g = refs.create_group(f"nlf{i}")
            g["a"], g["b"] = np.array([[nlf[0]]]), np.array([[nlf[1]]])
            lists["nlf"].append(g.ref)
            c = refs.create_group(f"cam{i}")
            c["pattern"] = np.array([[CFA_CODES[ch] for ch in pat[:2]], [CFA_CODES[ch] for ch in pat[2:]]],
                                    np.float64).T
            c["ColorMatrix2"] = xyz2cam.reshape(9, 1)
            c["AsShotNeutral"] = np.asarray(neutral, np.float64).reshape(3, 1)
            lists["camera"].append(c.ref)
            s = sigma if sigma is not None else np.arange(len(b) * 4, dtype=np.float64).reshape(len(b), 2, 2) * 1e-3
            lists["sigma_raw"].append(refs.create_dataset(f"sig{i}", data=s.T).ref)  # h5 index [xx, yy, box]
        for k, v in lists.items():
            info.create_dataset(k, data=np.array([v], dtype=h5py.ref_dtype))
    return root


@pytest.fixture(scope="session")
def div2k_src(tmp_path_factory) -> Path:
    """DIV2K-Val layout holding 0801–0804 (an incomplete set: builds need allow_partial)."""
    return make_div2k(tmp_path_factory.mktemp("div2k"))


@pytest.fixture(scope="session")
def div2k_bench(tmp_path_factory, div2k_src) -> Path:
    """A DIV2K-Val benchmark of 4 images, centre 128x128 crops (built once; tests must not modify it)."""
    from benchmarks.builders import build_benchmark, load_recipe

    out = tmp_path_factory.mktemp("bench") / "div2k-val"
    recipe = load_recipe("div2k-val", crop={"policy": "center", "size": 128})
    build_benchmark(recipe, div2k_src, out, allow_partial=True)
    return out


@pytest.fixture
def bench_copy(div2k_bench, tmp_path) -> Path:
    """A private copy of :func:`div2k_bench` that a test may score into or modify."""
    import shutil

    return Path(shutil.copytree(div2k_bench, tmp_path / "bench"))


@pytest.fixture(scope="session")
def isp_dir(tmp_path_factory, div2k_bench) -> Path:
    """Classical-ISP (bilinear) sRGB inputs of :func:`div2k_bench`."""
    from benchmarks.isp import run_isp

    return run_isp(div2k_bench, tmp_path_factory.mktemp("isp") / "classical")
