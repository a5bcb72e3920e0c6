import numpy as np
import pytest
import torch

from rawsynth.errors import ConfigError, ShapeError
from rawsynth.mns import SensorParams, normalize, quantize


def test_quantize_normalize_round_trip_is_within_half_a_dn():
    s = SensorParams(12, 256, 4095)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dn = quantize(x, s)
    assert dn.dtype == torch.uint16
    back = normalize(dn, s, dtype=torch.float64)
    assert (back - x).abs().max() <= 0.5 / s.range + 1e-12
    assert torch.equal(quantize(back, s), dn)  # DN → x → DN is exact


def test_integer_dn_round_trip_is_exact_for_every_code():
    s = SensorParams(14, 512, 16383)
    dn = torch.arange(0, 16384, dtype=torch.int32).to(torch.uint16).view(1, 1, 128, 128)
    assert torch.equal(quantize(normalize(dn, s), s), dn)


def test_clipping_at_white_and_zero_and_values_below_black_survive():
    s = SensorParams(12, 256, 4095)
    x = torch.tensor([-1.0, -0.05, 0.0, 1.0, 1.2]).view(1, 1, 1, 5)
    dn = quantize(x, s).to(torch.int32).flatten().tolist()
    assert dn == [0, round(256 - 0.05 * 3839), 256, 4095, 4095]
    assert normalize(quantize(x, s), s)[0, 0, 0, 1] < 0  # read noise below black is kept
    assert normalize(quantize(x, s), s, clip=True).min() == 0


def test_black_level_offset():
    for black in (0, 64, 256, 1024):
        s = SensorParams(12, black, 4095)
        assert quantize(torch.zeros(1, 1, 1, 1), s).item() == black
        assert normalize(torch.full((1, 1, 1, 1), black, dtype=torch.int32), s).item() == 0.0


def test_per_sample_sensors():
    ss = [SensorParams(12, 256, 4095), SensorParams(14, 512, 16383)]
    dn = quantize(torch.full((2, 1, 2, 2), 0.5), ss)
    assert dn[0].unique().item() == round(256 + 0.5 * 3839) and dn[1].unique().item() == round(512 + 0.5 * 15871)
    np.testing.assert_allclose(normalize(dn, ss).numpy(), 0.5, atol=0.5 / 3839)


def test_json_round_trip_and_validation():
    s = SensorParams(10, 64, 1023)
    assert SensorParams.from_json(s.to_json()) == s
    for bad in (dict(bit_depth=17), dict(black_level=5000), dict(black_level=-1), dict(white_level=5000),
                dict(black_level=1.5), dict(bit_depth=True)):
        with pytest.raises(ConfigError):
            SensorParams(**bad)
    with pytest.raises(ConfigError, match="unknown"):
        SensorParams.from_dict({"black": 1})


def test_bad_tensors_raise():
    with pytest.raises(ShapeError):
        quantize(torch.zeros(4, 4), SensorParams())
    with pytest.raises(ShapeError):
        quantize(torch.zeros(1, 1, 4, 4, dtype=torch.int32), SensorParams())
    with pytest.raises(ShapeError):
        normalize(torch.zeros(1, 1, 4, 4), "not a sensor")
