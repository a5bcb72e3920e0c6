"""DND against the official submission kit's expectations (``dnd_denoise.py`` / ``bundle_submissions.py`` by
T. Plötz; see docs/benchmarks.md): the reader on a download laid out as MATLAB 7.3 writes it and as the kit indexes
it, and the submission writer on a synthetic 2-image download, its bundles read back with ``scipy.io.loadmat``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from benchmarks.bench import Bench
from benchmarks.cli import main
from benchmarks.dnd import DndRecipe, build_dnd, read_dnd_info, read_dnd_noisy
from benchmarks.dnd_submit import bundle, check_bundle, load_box_prediction, write_submission
from benchmarks.errors import BenchmarkError, PairingError
from rawsynth.io import read_png16, write_png16
from rawsynth.mns import Pattern

H, W, NB = 96, 128, 20
CODES = {"R": 1, "G": 2, "B": 3}


def _set_class(obj, cls: str) -> None:
    obj.attrs["MATLAB_class"] = np.bytes_(cls)


def make_official_dnd(root, mosaics, patterns, seed=0):
    """A DND download as MATLAB 7.3 stores it and as the kit reads it: ``images_raw/NNNN.mat`` with ``Inoisy``
    (MATLAB H×W → HDF5 W×H), ``info.mat`` holding struct ``info`` whose fields are 1×N cells (HDF5 datasets of
    object references, shape (1, N), read as ``info[bb[0][i]]``): ``boundingboxes`` (20×4 doubles, 1-based
    inclusive [r1 c1 r2 c2] → HDF5 (4, 20)), ``nlf`` (struct with 1×1 ``a``, ``b``), ``sigma_raw`` (20×2×2 →
    HDF5 (2, 2, 20), read as ``[xx, yy, box]``), ``sigma_srgb`` (1×20), ``camera`` (struct: 2×2 ``pattern``,
    ``ColorMatrix2`` 9 values, ``AsShotNeutral`` 3 values). Files carry MATLAB's 512-byte user block."""
    import h5py

    rng = np.random.default_rng(seed)
    (root / "images_raw").mkdir(parents=True)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2017 HDF5 schema 1.00 ."
    for i, m in enumerate(mosaics):
        p = root / "images_raw" / f"{i + 1:04d}.mat"
        with h5py.File(p, "w", userblock_size=512) as f:
            d = f.create_dataset("Inoisy", data=np.asarray(m, np.float64).T)
            _set_class(d, "double")
        with open(p, "r+b") as fh:
            fh.write(header.ljust(128))
    boxes, sig = [], []
    with h5py.File(root / "info.mat", "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        info = f.create_group("info")
        _set_class(info, "struct")
        fields = {k: [] for k in ("boundingboxes", "nlf", "sigma_raw", "sigma_srgb", "camera")}
        for i, pat in enumerate(patterns):
            r1 = rng.integers(0, (H - 16) // 2, NB) * 2 + 1 + (np.arange(NB) % 2)  # odd and even 0-based rows
            c1 = rng.integers(0, (W - 16) // 2, NB) * 2 + 1 + (np.arange(NB) // 2 % 2)
            b = np.stack([r1, c1, r1 + 15, c1 + 15], axis=1).astype(np.float64)  # 16x16 boxes
            boxes.append(b)
            d = refs.create_dataset(f"bb{i}", data=b.T)
            _set_class(d, "double")
            fields["boundingboxes"].append(d.ref)
            g = refs.create_group(f"nlf{i}")
            _set_class(g, "struct")
            g["a"], g["b"] = np.array([[1e-3 * (i + 1)]]), np.array([[2e-6]])
            fields["nlf"].append(g.ref)
            s = rng.uniform(0.001, 0.01, (NB, 2, 2))
            sig.append(s)
            fields["sigma_raw"].append(refs.create_dataset(f"sr{i}", data=s.T).ref)
            fields["sigma_srgb"].append(refs.create_dataset(f"ss{i}", data=rng.uniform(1, 5, (NB, 1))).ref)
            c = refs.create_group(f"cam{i}")
            _set_class(c, "struct")
            c["pattern"] = np.array([[CODES[pat[0]], CODES[pat[1]]], [CODES[pat[2]], CODES[pat[3]]]], np.float64).T
            c["ColorMatrix2"] = np.array([[0.9, -0.3, -0.1, -0.5, 1.4, 0.1, -0.1, 0.2, 0.7]]).T
            c["AsShotNeutral"] = np.array([[0.5, 1.0, 0.7]]).T
            fields["camera"].append(c.ref)
        for k, v in fields.items():
            d = info.create_dataset(k, data=np.array([v], dtype=h5py.ref_dtype))
            _set_class(d, "cell")
    for p in (root / "info.mat",):
        with open(p, "r+b") as fh:
            fh.write(header.ljust(128))
    return boxes, sig


def kit_boxes(root, i):
    """What ``dnd_denoise.denoise_raw`` does for image ``i`` (0-based): its crops, NLF and per-plane sigmas."""
    import h5py

    info = h5py.File(root / "info.mat", "r")["info"]
    bb = info["boundingboxes"]
    noisy = np.float32(np.array(h5py.File(root / "images_raw" / f"{i + 1:04d}.mat", "r")["Inoisy"]).T)
    boxes = np.array(info[bb[0][i]]).T
    nlf = info[info["nlf"][0][i]]
    a, b = nlf["a"][0][0], nlf["b"][0][0]
    out = []
    for k in range(NB):
        idx = [int(boxes[k, 0] - 1), int(boxes[k, 2]), int(boxes[k, 1] - 1), int(boxes[k, 3])]
        crop = noisy[idx[0]:idx[1], idx[2]:idx[3]].copy()
        sig = [[info[info["sigma_raw"][0][i]][xx, yy, k] for xx in range(2)] for yy in range(2)]
        out.append((idx, crop, sig))
    pattern = np.asarray(np.array(info[info["camera"][0][i]]["pattern"]).T).tolist()
    return out, (a, b), pattern


def _mosaics():
    rng = np.random.default_rng(3)
    return [rng.uniform(0.05, 0.9, (H, W)).astype(np.float32) for _ in range(2)]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnd") / "dnd_2017"
    mosaics = _mosaics()
    make_official_dnd(root, mosaics, ["GBRG", "RGGB"])
    bench = tmp_path_factory.mktemp("bench") / "dnd"
    build_dnd(root, bench, recipe=DndRecipe(images=2, boxes_per_image=NB), allow_partial=True)
    return root, mosaics, bench


def test_reader_matches_the_kits_indexing(official):
    root, mosaics, bench = official
    infos = read_dnd_info(root / "info.mat")
    b = Bench.load(bench)
    for i in range(2):
        assert np.array_equal(read_dnd_noisy(root / "images_raw" / f"{i + 1:04d}.mat"), mosaics[i])
        kit, (a, nb), pattern = kit_boxes(root, i)
        assert infos[i].nlf == (a, nb)
        assert infos[i].pattern.value == "".join("_RGB"[int(v)] for row in pattern for v in row)
        for k, (idx, crop, sig) in enumerate(kit):
            top, left, bottom, right = infos[i].boxes[k]
            assert [top, bottom, left, right] == idx
            key = f"{i + 1:04d}_{k + 1:02d}"
            m = b.meta(key)
            s = m["sensor"]
            x = (read_png16(b.path("raw", key)).astype(np.float64) - s["black_level"]) / (s["white_level"] -
                                                                                        s["black_level"])
            assert np.abs(x - crop).max() < 1e-5  # the kit's crop, through our 16-bit container
            assert np.allclose(m["noise"]["sigma_raw"], sig, rtol=0, atol=0)  # crop phase (yy, xx) as the kit
            assert m["pattern"] == infos[i].pattern.shifted(top, left).value


def _predictions(bench, out, kind):
    """A trivial 'denoiser' output per box: the noisy box itself, stored the way ``kind`` says."""
    b = Bench.load(bench)
    out.mkdir()
    for k in b.keys:
        m = b.meta(k)
        dn = read_png16(b.path("raw", k))
        if kind == "mosaic":
            write_png16(out / f"{k}.png", dn)
        elif kind == "linear":  # an RGB linear output whose mosaic is the noisy box
            s = m["sensor"]
            x = np.clip((dn.astype(np.float64) - s["black_level"]) / (s["white_level"] - s["black_level"]), 0, 1)
            rgb = np.repeat(np.round(x * 65535)[..., None], 3, axis=2).astype(np.uint16)
            write_png16(out / f"{k}_out.png", rgb)
        elif kind == "srgb":
            import cv2

            g = np.clip(dn.astype(np.float64) / 65535 * 255, 0, 255).astype(np.uint8)
            cv2.imwrite(str(out / f"{k}.png"), np.stack([g, g // 2, g // 3], axis=2))
    return b


@pytest.mark.parametrize("kind", ["mosaic", "linear"])
def test_raw_submission_bundle(official, tmp_path, kind):
    root, mosaics, bench = official
    b = _predictions(bench, tmp_path / "pred", kind)
    s = write_submission(bench, tmp_path / "pred", tmp_path / "sub", "raw")
    assert s.images == 2 and s.boxes == 40 and not s.complete
    shapes = {k: tuple(b.meta(k)["size"]) for k in b.keys}
    assert check_bundle(tmp_path / "sub" / "bundled", "raw", shapes, images=2) == []
    # per-box files: what dnd_denoise.py saves; values = the kit's noisy crop (the 'denoiser' is the identity)
    kit, _, _ = kit_boxes(root, 1)
    for k, (_, crop, _) in enumerate(kit):
        c = scipy.io.loadmat(tmp_path / "sub" / f"0002_{k + 1:02d}.mat")["Idenoised_crop"]
        assert c.dtype == np.float32 and c.shape == crop.shape and np.abs(c - np.clip(crop, 0, 1)).max() < 2e-5
    # the bundle equals what bundle_submissions_raw makes of those per-box files
    m = scipy.io.loadmat(tmp_path / "sub" / "bundled" / "0002.mat")
    assert m["israw"].tolist() == [[1]] and m["eval_version"].tolist() == ["1.0"]
    assert m["Idenoised"].shape == (1, NB) and m["Idenoised"].dtype == object
    for k in range(NB):
        per_box = scipy.io.loadmat(tmp_path / "sub" / f"0002_{k + 1:02d}.mat")["Idenoised_crop"]
        assert np.array_equal(m["Idenoised"][0, k], per_box)


def test_linear_rgb_is_remosaicked_with_the_boxs_own_pattern(official, tmp_path):
    _, _, bench = official
    b = Bench.load(bench)
    key = "0001_02"  # odd column offset: its pattern differs from the image's
    meta = b.meta(key)
    assert meta["pattern"] != "GBRG"
    rgb = np.zeros((16, 16, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32768, 0  # R = 1, G = 0.5, B = 0
    write_png16(tmp_path / "x.png", rgb)
    x = load_box_prediction(tmp_path / "x.png", "raw", meta)
    pat = Pattern(meta["pattern"]).value
    want = {"R": 1.0, "G": 32768 / 65535, "B": 0.0}
    assert x.dtype == np.float32 and x[0, 0] == np.float32(want[pat[0]]) and x[0, 1] == np.float32(want[pat[1]])
    assert x[1, 0] == np.float32(want[pat[2]]) and x[1, 1] == np.float32(want[pat[3]])


def test_srgb_submission_and_cli(official, tmp_path, capsys):
    _, _, bench = official
    b = _predictions(bench, tmp_path / "pred", "srgb")
    rc = main(["dnd-submit", "--bench", str(bench), "--pred", str(tmp_path / "pred"), "--track", "srgb",
               "--out", str(tmp_path / "sub")])
    assert rc == 0, capsys.readouterr().err
    assert "srgb track: 40 boxes of 2 images" in capsys.readouterr().out
    shapes = {k: (*b.meta(k)["size"], 3) for k in b.keys}
    assert check_bundle(tmp_path / "sub" / "bundled", "srgb", shapes, images=2) == []
    assert scipy.io.loadmat(tmp_path / "sub" / "bundled" / "0001.mat")["israw"].tolist() == [[0]]
    # a second run needs --overwrite; a missing box is listed, nothing written
    assert main(["dnd-submit", "--bench", str(bench), "--pred", str(tmp_path / "pred"), "--track", "srgb",
                 "--out", str(tmp_path / "sub")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "pred" / "0002_20.png").unlink()
    with pytest.raises(PairingError, match="1 missing"):
        write_submission(bench, tmp_path / "pred", tmp_path / "sub2", "srgb")
    assert not (tmp_path / "sub2").exists()


def test_check_bundle_finds_format_errors(tmp_path):
    (tmp_path / "sub").mkdir()
    for k in range(NB):
        scipy.io.savemat(tmp_path / "sub" / f"0001_{k + 1:02d}.mat",
                         {"Idenoised_crop": np.full((4, 4), 0.5, np.float64 if k == 3 else np.float32)})
    bundle(tmp_path / "sub", "raw", [1], NB)
    problems = check_bundle(tmp_path / "sub" / "bundled", "raw", images=1)
    assert problems == ["0001_04: float64 (4, 4), expected float32 with 2 dims"]
    assert check_bundle(tmp_path / "sub" / "bundled", "srgb", images=1)[0].startswith("0001.mat: israw")


def test_not_a_dnd_benchmark(div2k_bench, tmp_path):
    with pytest.raises(BenchmarkError, match="not DND"):
        write_submission(div2k_bench, tmp_path, tmp_path / "o", "raw")
