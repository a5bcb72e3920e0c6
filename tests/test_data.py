"""Training reader: decoding, Bayer-aware crops/flips, reproducible randomness, workers, error handlers."""

from __future__ import annotations

import collections
import itertools
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rawsynth.data import (RawPairDataset, apply_crop_flip, bayer_crop_flip, collate, decode_pair, make_dataset,
                           make_loader)
from rawsynth.errors import ConfigError, InputError, ShapeError
from rawsynth.mns import Pattern, SensorParams, mosaic, quantize
from rawsynth.shards import encode_sample, write_shard

from .shards.helpers import SENSOR, make_arrays, make_meta, make_sample, make_shards


def _dn(raw: torch.Tensor, sensor: SensorParams = SENSOR) -> torch.Tensor:
    """Normalised raw back to integer DN (exact for values decoded from DN)."""
    return torch.round(raw.double() * (sensor.white_level - sensor.black_level) + sensor.black_level).long()


def _clean_dn(hq: torch.Tensor, pattern: Pattern, sensor: SensorParams = SENSOR) -> torch.Tensor:
    """The noise-free mosaic of ``hq`` in DN, computed the way the helpers made the stored raw."""
    hq16 = torch.round(hq.double() * 65535)
    return quantize(mosaic((hq16 / 65535)[None], pattern), sensor)[0].long()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), 4, 3, size=32)


def _keys(ds) -> list[str]:
    return [s["key"] for s in ds]


# ------------------------------------------------------------------------------------------------ samples


def test_decode_pair_normalises_with_own_sensor():
    sensor = SensorParams(14, 512, 16383)
    raw, hq16, _ = make_arrays(0, 16, "BGGR", sensor)
    raw[0, 0], raw[0, 1] = 500, 16383  # below black (read noise) and saturated
    pair = decode_pair(encode_sample("k", raw, hq16, make_meta("k", "BGGR", sensor)))
    assert pair["key"] == "k" and pair["pattern"] is Pattern.BGGR
    assert pair["raw"].shape == (1, 16, 16) and pair["raw"].dtype == torch.float32
    assert pair["hq"].shape == (3, 16, 16) and pair["hq"].dtype == torch.float32
    expect = (raw.astype(np.float64) - 512) / (16383 - 512)
    assert torch.allclose(pair["raw"][0].double(), torch.from_numpy(expect), atol=1e-7)
    assert pair["raw"][0, 0, 0] < 0 and pair["raw"][0, 0, 1] == 1.0  # not clipped
    assert np.array_equal(np.round(pair["hq"].permute(1, 2, 0).double().numpy() * 65535), hq16)


@pytest.mark.parametrize("pattern", list(Pattern))
def test_crop_flip_keeps_mosaic_invariant(pattern):
    raw, hq16, _ = make_arrays(3, 32, pattern)
    pair = decode_pair(encode_sample("k", raw, hq16, make_meta("k", pattern)))
    assert torch.equal(_dn(pair["raw"]), _clean_dn(pair["hq"], pattern))  # the sample starts consistent
    for top, left, hf, vf in itertools.product((0, 1, 2, 3), (0, 1, 4, 5), (False, True), (False, True)):
        for size in (16, 15):  # even and odd crop sizes
            out = apply_crop_flip(pair, top, left, size, size, hf, vf)
            assert out["raw"].shape == (1, size, size) and out["hq"].shape == (3, size, size)
            assert torch.equal(_dn(out["raw"]), _clean_dn(out["hq"], out["pattern"])), (top, left, hf, vf, size)
            assert out["meta"]["augment"] == [{"top": top, "left": left, "height": size, "width": size,
                                               "hflip": hf, "vflip": vf}]
    assert "augment" not in pair["meta"]  # the input is not modified


def test_bayer_crop_flip_random_covers_all_parities():
    raw, hq16, _ = make_arrays(1, 24, "GBRG")
    pair = decode_pair(encode_sample("k", raw, hq16, make_meta("k", "GBRG")))
    seen = set()
    for seed in range(200):
        out = bayer_crop_flip(pair, 10, np.random.default_rng(seed))
        a = out["meta"]["augment"][-1]
        seen.add((a["top"] % 2, a["left"] % 2, a["hflip"], a["vflip"]))
        assert 0 <= a["top"] <= 14 and 0 <= a["left"] <= 14
        assert torch.equal(_dn(out["raw"]), _clean_dn(out["hq"], out["pattern"]))
    assert len(seen) == 16
    same = [bayer_crop_flip(pair, 10, np.random.default_rng(7)) for _ in range(2)]
    assert torch.equal(same[0]["raw"], same[1]["raw"]) and same[0]["meta"] == same[1]["meta"]
    whole = bayer_crop_flip(pair, None, np.random.default_rng(0), hflip=False, vflip=False)
    assert torch.equal(whole["raw"], pair["raw"]) and whole["pattern"] is Pattern.GBRG


def test_crop_flip_errors():
    raw, hq16, _ = make_arrays(0, 16)
    pair = decode_pair(encode_sample("k", raw, hq16, make_meta("k")))
    with pytest.raises(ShapeError, match="larger than"):
        bayer_crop_flip(pair, 17, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Generator"):
        bayer_crop_flip(pair, 8, np.random.RandomState(0))
    with pytest.raises(ConfigError, match="positive"):
        bayer_crop_flip(pair, 0, np.random.default_rng(0))
    with pytest.raises(ShapeError, match="outside"):
        apply_crop_flip(pair, 10, 0, 8, 8)
    with pytest.raises(ShapeError, match="size of raw"):
        apply_crop_flip({**pair, "hq": pair["hq"][:, :8]}, 0, 0, 4, 4)


def test_collate():
    pairs = [decode_pair(make_sample(f"k{i}", i, 16, p)) for i, p in enumerate(Pattern)]
    b = collate(pairs)
    assert b["raw"].shape == (4, 1, 16, 16) and b["hq"].shape == (4, 3, 16, 16)
    assert b["pattern"] == list(Pattern) and b["key"] == ["k0", "k1", "k2", "k3"] and len(b["meta"]) == 4
    with pytest.raises(ShapeError, match="differ in size"):
        collate([pairs[0], apply_crop_flip(pairs[1], 0, 0, 8, 8)])
    with pytest.raises(ShapeError, match="empty"):
        collate([])


# ---------------------------------------------------------------------------------------------- datasets


def test_dataset_reads_all_samples_in_order(shards):
    ds = make_dataset(shards, split_by_node=False)
    assert isinstance(ds, RawPairDataset)
    got = list(ds)
    assert [s["key"] for s in got] == [f"{j:06d}_{i}" for j in range(4) for i in range(3)]
    for s in got:
        assert s["raw"].shape == (1, 32, 32) and s["meta"]["augment"][0]["height"] == 32
        assert torch.equal(_dn(s["raw"]), _clean_dn(s["hq"], s["pattern"]))
    pattern = shards[0].replace("000000", "{000000..000003}")  # brace patterns work too
    assert _keys(make_dataset(pattern, flips=False)) == [s["key"] for s in got]


def test_sixteen_bit_values_survive_the_reader(tmp_path):
    sensor = SensorParams(16, 1024, 65535)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65536, (8, 8)).astype(np.uint16)
    hq = rng.integers(256, 65536, (8, 8, 3)).astype(np.uint16)
    url = write_shard(tmp_path / "s.tar", [encode_sample("k", raw, hq, make_meta("k", sensor=sensor))]).path
    (s,) = list(make_dataset(url, flips=False))
    assert torch.equal(_dn(s["raw"], sensor)[0], torch.from_numpy(raw.astype(np.int64)))
    assert np.array_equal(np.round(s["hq"].permute(1, 2, 0).double().numpy() * 65535).astype(np.uint16), hq)
    assert int(raw.max()) > 255 and int(hq.min()) > 255


def test_crops_reproducible_and_per_epoch(shards):
    def crops(ds):
        return {s["key"]: (s["meta"]["augment"][0], s["pattern"]) for s in ds}

    a = crops(make_dataset(shards, crop=12, seed=3))
    assert a == crops(make_dataset(shards, crop=12, seed=3))
    assert a != crops(make_dataset(shards, crop=12, seed=4))
    ds = make_dataset(shards, crop=12, seed=3)
    first, second = crops(ds), crops(ds)  # passes count up by themselves
    assert first == a and second != a
    ds.set_epoch(1)
    assert crops(ds) == second
    ds.set_epoch(0)
    assert crops(ds) == a
    # workers and shuffling do not change a sample's crop
    loader = make_loader(shards, batch_size=2, num_workers=2, crop=12, seed=3, shuffle=5)
    got = {k: (m["augment"][0], p) for b in loader for k, m, p in zip(b["key"], b["meta"], b["pattern"])}
    assert got == a


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_yields_each_sample_once(shards, num_workers):
    loader = make_loader(shards, batch_size=2, num_workers=num_workers, crop=16)
    keys, n = [], 0
    for b in loader:
        assert b["raw"].shape[1:] == (1, 16, 16) and b["hq"].shape[1:] == (3, 16, 16)
        assert all(isinstance(p, Pattern) for p in b["pattern"])
        keys += b["key"]
        n += 1
    assert sorted(keys) == [f"{j:06d}_{i}" for j in range(4) for i in range(3)]
    assert n == 6 if num_workers == 0 else n >= 6


def test_split_by_node_with_env(shards, monkeypatch):
    ranks = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ranks.append(_keys(make_dataset(shards)))
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == [f"{j:06d}_{i}" for j in range(4) for i in range(3)]
    assert len(_keys(make_dataset(shards, split_by_node=False))) == 12
    with pytest.raises(ConfigError, match="readers"):
        make_loader(shards, 2, num_workers=4)  # 2 ranks x 4 workers > 4 shards


def test_shuffle_is_seeded_permutation(shards):
    order = _keys(make_dataset(shards, shuffle=4, seed=1))
    assert sorted(order) == sorted(_keys(make_dataset(shards)))
    assert order != _keys(make_dataset(shards))
    assert order == _keys(make_dataset(shards, shuffle=4, seed=1))


def test_resampled_with_epoch(shards):
    ds = make_dataset(shards, resampled=True, epoch_size=10, seed=5, crop=8)
    a = _keys(ds)
    assert len(a) == 10
    assert a == _keys(make_dataset(shards, resampled=True, epoch_size=10, seed=5, crop=8))
    b = _keys(ds)  # next epoch: another draw
    assert len(b) == 10 and b != a
    reps = [s for s in make_dataset(shards, resampled=True, epoch_size=40, seed=5, crop=8)]
    counts = collections.Counter(s["key"] for s in reps)
    key = next(k for k, c in counts.items() if c > 1)
    boxes = [s["meta"]["augment"][0] for s in reps if s["key"] == key]
    assert len({tuple(sorted(b.items())) for b in boxes}) > 1  # repeats in one epoch get new crops


# ------------------------------------------------------------------------------------------------ errors


@pytest.fixture
def damaged(tmp_path):
    """Three shards: good, one with a garbage raw.npy sample, truncated; 2 + 3 + some good samples."""
    good = write_shard(tmp_path / "shard-000000.tar", [make_sample(f"a{i}", i, 16) for i in range(2)]).path
    bad = make_sample("b1", 1, 16)
    bad["raw.npy"] = b"\x93NUMPY garbage"
    mixed = write_shard(tmp_path / "shard-000001.tar",
                        [make_sample("b0", 0, 16), bad, make_sample("b2", 2, 16)]).path
    big = [make_sample(f"c{i}", i, 64) for i in range(4)]
    trunc = write_shard(tmp_path / "shard-000002.tar", big).path
    data = Path(trunc).read_bytes()
    Path(trunc).write_bytes(data[:len(data) // 2])
    return [good, mixed, trunc]


def test_handler_raise(damaged):
    with pytest.raises(InputError, match="corrupt field"):
        list(make_dataset(damaged[:2]))
    with pytest.raises((tarfile.ReadError, InputError)):
        list(make_dataset(damaged[2:]))


def test_handler_skip_and_warn(damaged):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys = _keys(make_dataset(damaged, handler="skip"))
    assert keys[:4] == ["a0", "a1", "b0", "b2"]
    assert set(keys[4:]) <= {"c0", "c1"} and "b1" not in keys
    with pytest.warns(RuntimeWarning, match="skipping bad data"):
        assert _keys(make_dataset(damaged, handler="warn")) == keys
    with pytest.raises(ConfigError, match="handler"):
        make_dataset(damaged, handler="ignore")


def test_never_unpickles(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle must never be called")

    s = make_sample("p", 0, 16)
    s["extra.pyd"] = pickle.dumps({"evil": True})
    url = write_shard(tmp_path / "p.tar", [s, make_sample("q", 1, 16)]).path
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    with pytest.raises(InputError, match="unsafe field"):
        list(make_dataset(url))
    assert _keys(make_dataset(url, handler="skip")) == ["q"]


def test_argument_validation(tmp_path, shards):
    with pytest.raises(ConfigError, match="does not exist"):
        make_dataset(tmp_path / "nope.tar")
    with pytest.raises(ConfigError, match="no shards"):
        make_dataset([])
    with pytest.raises(ConfigError, match="crop"):
        make_dataset(shards, crop=0)
    with pytest.raises(ConfigError, match="epoch_size"):
        make_dataset(shards, epoch_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(shards, 0)
    with pytest.raises(ConfigError, match="readers"):
        make_loader(shards[:1], 2, num_workers=2)
