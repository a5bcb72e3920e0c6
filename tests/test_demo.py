"""The ISP round-trip demo writes what it promises, and its files agree with each other."""

import json

import cv2
import numpy as np
import torch

from rawsynth.demo import DEMO_PHOTOS, run_demo
from rawsynth.io.png16 import read_png16
from rawsynth.io.raw import read_raw
from rawsynth.isp import ISPParams, sample_isp_params
from rawsynth.mns import NoiseParams, Pattern, SensorParams
from rawsynth.rng import numpy_rng


def test_demo_outputs_are_consistent(tmp_path):
    path = run_demo(tmp_path, seed=3, size=64, photos=DEMO_PHOTOS[:2])
    grid = cv2.imread(str(path))
    assert grid.shape == (2 * 64, 5 * 64, 3)
    for name in DEMO_PHOTOS[:2]:
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        isp = ISPParams.from_dict(meta["isp"])
        assert isp == sample_isp_params(numpy_rng(3, name, "isp"))  # metadata = the parameters drawn for that key
        NoiseParams.from_dict(meta["noise"])
        mosaic = read_png16(tmp_path / f"{name}_raw.png")
        raw = read_raw(tmp_path / f"{name}.dng")
        assert np.array_equal(raw.mosaic, mosaic)
        assert raw.pattern is Pattern(meta["pattern"])
        assert raw.sensor == SensorParams.from_dict(meta["sensor"])
        assert raw.iso == round(meta["noise"]["iso"]) or abs(raw.iso - meta["noise"]["iso"]) < 1


def test_demo_is_deterministic(tmp_path):
    a = run_demo(tmp_path / "a", seed=0, size=32, photos=("astronaut",))
    b = run_demo(tmp_path / "b", seed=0, size=32, photos=("astronaut",))
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a/astronaut_raw.png").read_bytes() == (tmp_path / "b/astronaut_raw.png").read_bytes()
    assert not torch.equal(torch.from_numpy(read_png16(tmp_path / "a/astronaut_raw.png")),
                           torch.from_numpy(read_png16(run_demo(tmp_path / "c", seed=1, size=32,
                                                                photos=("astronaut",)).parent / "astronaut_raw.png")))
