"""DegradationConfig: Real-ESRGAN defaults, YAML/dict round trips, strict validation."""

import math

import pytest
import yaml

from rawsynth.degrade import DegradationConfig, FinalConfig, KernelConfig, KernelType, ResizeMode, StageConfig
from rawsynth.errors import ConfigError


def test_defaults_are_real_esrgan_x4plus_without_noise():
    c = DegradationConfig()
    assert (c.scale, c.resize_back, c.resize_back_mode) == (4, True, ResizeMode.BICUBIC)
    for stage in (c.first, c.second):
        k = stage.kernel
        assert [t.value for t in k.kernel_list] == ["iso", "aniso", "generalized_iso", "generalized_aniso",
                                                    "plateau_iso", "plateau_aniso"]
        assert k.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
        assert k.size_range == (7, 21) and k.sizes == (7, 9, 11, 13, 15, 17, 19, 21)
        assert k.rotation_range == (-math.pi, math.pi)
        assert k.betag_range == (0.5, 4.0) and k.betap_range == (1.0, 2.0)
        assert k.sinc_prob == 0.1 and k.sinc_large_size == 13
        assert k.sinc_omega_range == (math.pi / 3, math.pi) and k.sinc_omega_range_large == (math.pi / 5, math.pi)
        assert stage.resize_modes == (ResizeMode.AREA, ResizeMode.BILINEAR, ResizeMode.BICUBIC)
    assert c.first.kernel.sigma_range == (0.2, 3.0) and c.second.kernel.sigma_range == (0.2, 1.5)
    assert c.first.blur_prob == 1.0 and c.second.blur_prob == 0.8
    assert c.first.resize_prob == (0.2, 0.7, 0.1) and c.first.resize_range == (0.15, 1.5)
    assert c.second.resize_prob == (0.3, 0.4, 0.3) and c.second.resize_range == (0.3, 1.2)
    assert c.first.jpeg_range == (30, 95) and c.second.jpeg_range is None  # its JPEG is the final one
    f = c.final
    assert (f.resize_first_prob, f.sinc_prob, f.sinc_size_range, f.jpeg_range) == (0.5, 0.8, (7, 21), (30, 95))
    assert f.sinc_omega_range == (math.pi / 3, math.pi)
    assert c.max_kernel_size == 21


def test_dict_and_yaml_round_trip(tmp_path):
    c = DegradationConfig(scale=2, resize_back=False, resize_back_mode="bilinear",
                          second=StageConfig(kernel=KernelConfig(sigma_range=(0.3, 1.0), kernel_list=["iso", "aniso"],
                                                                 kernel_prob=[0.5, 0.5]), blur_prob=0.5,
                                             jpeg_range=(60, 70)),
                          final=FinalConfig(resize_modes=("bicubic",), sinc_prob=0.0))
    assert DegradationConfig.from_dict(c.to_dict()) == c
    path = tmp_path / "deg.yaml"
    path.write_text(yaml.safe_dump(c.to_dict()))
    assert DegradationConfig.from_yaml(path) == c
    assert DegradationConfig.from_yaml(str(path)).to_dict() == c.to_dict()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert DegradationConfig.from_yaml(empty) == DegradationConfig()


def test_partial_mapping_merges_onto_the_stage_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("scale: 2\nsecond:\n  blur_prob: 0.5\n  kernel: {sinc_prob: 0.2}\n")
    c = DegradationConfig.from_yaml(path)
    assert c.scale == 2 and c.second.blur_prob == 0.5 and c.second.kernel.sinc_prob == 0.2
    assert c.second.kernel.sigma_range == (0.2, 1.5)  # second-order default kept, not the first order's
    assert c.second.resize_prob == (0.3, 0.4, 0.3) and c.first == DegradationConfig().first


@pytest.mark.parametrize("d,key", [
    ({"scael": 4}, "scael"),
    ({"second": {"kernel": {"sigma_rnage": [0.2, 1]}}}, "sigma_rnage"),
    ({"final": {"jpeg": [30, 95]}}, "jpeg"),
])
def test_unknown_key_is_named(d, key):
    with pytest.raises(ConfigError, match=key):
        DegradationConfig.from_dict(d)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("first:\n  resize_prob: [0.5, 0.5, 0.5]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*first.*resize_prob"):
        DegradationConfig.from_yaml(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("first: {kernel: {sinc_porb: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"unknown\.yaml.*first\.kernel.*sinc_porb"):
        DegradationConfig.from_yaml(unknown)
    broken = tmp_path / "broken.yaml"
    broken.write_text("first: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        DegradationConfig.from_yaml(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        DegradationConfig.from_yaml(listy)
    with pytest.raises(ConfigError, match="missing.yaml"):
        DegradationConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("d,match", [
    ({"first": {"resize_range": [1.5, 0.15]}}, "lo <= hi"),
    ({"first": {"resize_range": [1.1, 1.5]}}, "contain 1"),
    ({"first": {"resize_prob": [0.2, 0.7, 0.2]}}, "sum to 1"),
    ({"first": {"resize_prob": [0.5, 0.5]}}, "3 entries"),
    ({"first": {"resize_prob": [1.2, -0.2, 0.0]}}, ">= 0"),
    ({"first": {"kernel": {"kernel_prob": [0.5, 0.5]}}}, "6 entries"),
    ({"first": {"kernel": {"kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.13]}}}, "sum to 1"),
    ({"first": {"kernel": {"size_range": [7, 20]}}}, "odd"),
    ({"first": {"kernel": {"size_range": [8, 21]}}}, "odd"),
    ({"final": {"sinc_size_range": [21, 7]}}, "lo <= hi"),
    ({"first": {"kernel": {"sigma_range": [0.0, 3.0]}}}, "> 0"),
    ({"first": {"kernel": {"sigma_range": [3.0, 0.2]}}}, "lo <= hi"),
    ({"first": {"kernel": {"betag_range": [1.5, 4.0]}}}, "contain 1"),
    ({"first": {"kernel": {"sinc_omega_range": [1.0, 4.0]}}}, "<= 3.14"),
    ({"first": {"kernel": {"kernel_list": ["iso", "sinc", "aniso", "generalized_iso", "plateau_iso",
                                            "plateau_aniso"]}}}, "sinc"),
    ({"first": {"kernel": {"kernel_list": ["iso", "box"], "kernel_prob": [0.5, 0.5]}}}, "box"),
    ({"first": {"blur_prob": 1.5}}, "blur_prob"),
    ({"first": {"jpeg_range": [0, 95]}}, ">= 1"),
    ({"final": {"jpeg_range": [30, 101]}}, "<= 100"),
    ({"final": {"jpeg_range": [30.5, 95]}}, "int"),
    ({"final": {"resize_modes": []}}, "empty"),
    ({"final": {"resize_modes": ["bicubic", "bicubic"]}}, "duplicates"),
    ({"final": {"resize_modes": ["lanczos"]}}, "lanczos"),
    ({"final": {"resize_first_prob": -0.1}}, "resize_first_prob"),
    ({"scale": 0}, "scale"),
    ({"scale": 4.0}, "scale"),
    ({"scale": True}, "scale"),
    ({"resize_back": "yes"}, "resize_back"),
    ({"resize_back_mode": "nearest"}, "resize_back_mode"),
    ({"first": 3}, "mapping|StageConfig"),
])
def test_bad_values_raise_config_error(d, match):
    with pytest.raises(ConfigError, match=match):
        DegradationConfig.from_dict(d)


def test_constructor_validates_and_canonicalises():
    k = KernelConfig(kernel_list=["iso"], kernel_prob=[1], sigma_range=[1, 2])
    assert k.kernel_list == (KernelType.ISO,) and k.kernel_prob == (1.0,) and k.sigma_range == (1.0, 2.0)
    assert isinstance(k.sigma_range[0], float)
    with pytest.raises(ConfigError, match="KernelConfig"):
        StageConfig(kernel={"sigma_range": [1, 2]})
    with pytest.raises(ConfigError):
        DegradationConfig.from_dict([("scale", 4)])
