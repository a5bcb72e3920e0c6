"""The HQ's float → uint16 rounding, done in cache-sized row blocks, equals the whole-image expression it replaced
(``np.rint(hq · 65535 in float64).astype(uint16)``) for every shape and at the exact half-way points."""

import numpy as np
import pytest

from rawsynth.shards.fields import _HQ_ROWS, _hq_uint16


def _whole(x: np.ndarray) -> np.ndarray:
    return np.rint(np.multiply(x, 65535.0, dtype=np.float64)).astype(np.uint16)


@pytest.mark.parametrize("rows", [1, _HQ_ROWS - 1, _HQ_ROWS, _HQ_ROWS + 1, 3 * _HQ_ROWS + 5, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_equal_the_whole_image(rows, dtype):
    x = np.random.default_rng(rows).random((rows, 9, 3)).astype(dtype)
    x.flat[0], x.flat[-1] = 0, 1
    got = _hq_uint16(x)
    assert got.dtype == np.uint16 and got.shape == x.shape and np.array_equal(got, _whole(x))


def test_half_way_points_round_to_even():
    k = np.arange(3 * 21845, dtype=np.float64)
    x = ((k + 0.5) / 65535).reshape(-1, 5, 3)
    assert np.array_equal(_hq_uint16(x), _whole(x))
    assert np.array_equal(_hq_uint16(np.array([[[0.5 / 65535, 1.5 / 65535, 2.5 / 65535]]])), [[[0, 2, 2]]])
