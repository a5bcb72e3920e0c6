"""On-the-fly synthesis against the shards ``rawsynth generate`` writes for the same sources, config and seed."""

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch

from rawsynth.errors import ConfigError, InputError, ShapeError
from rawsynth.generate import generate
from rawsynth.mns import NoiseParams, SensorParams, mosaic, quantize
from rawsynth.onthefly import OnTheFlySynth, SourceCrops, collate_crops, make_onthefly_loader
from rawsynth.pipeline import Recipe, SynthConfig, sample_recipe, srgb_to_linear_lut
from rawsynth.shards import decode_sample, iter_shard, legacy_meta
from rawsynth.sources import Source, bundled_sources

SEED = 5
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cfg(mode="rddm"):
    return SynthConfig(mode=mode, crop=64, crops_per_image=2, save_srgb=True, small_policy="reflect")


@pytest.fixture(scope="module")
def sources():
    return sorted(bundled_sources())[:3]


def _shards(tmp, sources, cfg) -> dict:
    generate(sources, tmp, cfg, seed=SEED, shard_size=4, progress=False)
    out = {}
    for p in sorted(tmp.glob("shard-*.tar")):
        for s in iter_shard(p):
            d = decode_sample(s)
            out[d["key"]] = d
    return out


@pytest.fixture(scope="module")
def rddm(sources, tmp_path_factory):
    return _shards(tmp_path_factory.mktemp("rddm"), sources, _cfg())


def _batch(sources, cfg):
    ds = SourceCrops(sources, cfg, seed=SEED)
    return collate_crops([ds[i] for i in range(len(ds))])


def test_loader_streams_the_crops_generate_cuts(sources, rddm):
    ds = SourceCrops(sources, _cfg(), seed=SEED)
    assert len(ds) == len(rddm) == 6
    for i in range(len(ds)):
        it = ds[i]
        shard = rddm[it["key"]]
        assert it["srgb"].dtype == torch.uint8 and it["srgb"].shape == (3, 64, 64)
        np.testing.assert_array_equal(it["srgb"].permute(1, 2, 0).numpy(), shard["gt"])  # the very crop
        legacy = legacy_meta(shard["meta"])  # the shard's version-2 meta in the form of the in-memory objects
        assert it["source"] == legacy["source"] and it["crop"].to_dict() == legacy["crop"]
        assert it["recipe"] == sample_recipe(SEED, it["key"], _cfg(), (64, 64))


def test_cpu_batch_equals_the_shards(sources, rddm):
    """On the CPU (degradation = the CPU chain, IPTP+MNS = the torch reference with the same generator
    streams) the batch is the shards' content: meta equal, lq/raw byte-identical, hq within PNG-16 rounding."""
    synth = OnTheFlySynth(_cfg(), SEED, "cpu", backend="torch")
    batch = _batch(sources, _cfg())
    out = synth(batch)
    assert set(out) == {"raw", "hq", "pattern", "meta", "key"}
    assert out["raw"].shape == (6, 1, 64, 64) and out["raw"].dtype == torch.float32
    assert out["hq"].shape == (6, 3, 64, 64) and out["hq"].dtype == torch.float32
    lq = synth.degrade(batch["srgb"], batch["recipe"])
    for i, k in enumerate(out["key"]):
        s = rddm[k]
        assert json.loads(json.dumps(out["meta"][i])) == s["meta"]  # every recorded parameter
        assert out["pattern"][i].value == s["meta"]["pattern"]
        np.testing.assert_array_equal(lq[i].permute(1, 2, 0).numpy(), s["lq"])
        sensor = SensorParams.from_dict(s["meta"]["sensor"])
        dn = np.rint(out["raw"][i, 0].numpy().astype(np.float64) * sensor.range + sensor.black_level)
        np.testing.assert_array_equal(dn, s["raw_dn"])
        assert np.abs(out["hq"][i].permute(1, 2, 0).numpy() - s["hq"]).max() <= 0.5 / 65535 + 1e-7


def _noise_free_and_z(out, batch, synth, lqs):
    """Check the noise-free DN (zero-noise recipes) exactly; return the noise residual in standard units.

    ``lqs``: key → the ``(H, W, 3)`` uint8 LQ the batch's raw was made from."""
    import dataclasses

    quiet = [dataclasses.replace(r, noise=NoiseParams(r.noise.iso, 0.0, 0.0)) for r in batch["recipe"]]
    hq8 = batch["srgb"].to(synth.device)
    src8 = torch.stack([torch.from_numpy(lqs[k]).permute(2, 0, 1) for k in batch["key"]]).to(synth.device)
    clean = synth.pairs(hq8, src8, quiet, batch["key"])
    zs = []
    for i, r in enumerate(batch["recipe"]):
        # independent reference of the clean DN: the CPU pipeline's own functions on the shard's LQ
        lin = srgb_to_linear_lut(lqs[batch["key"][i]], r.isp)
        ref = quantize(mosaic(lin, r.pattern), r.sensor)[0, 0].numpy().astype(np.float64)
        c = clean["raw"][i, 0].cpu().double().numpy() * r.sensor.range + r.sensor.black_level
        np.testing.assert_array_equal(np.rint(c), ref)
        x = (ref - r.sensor.black_level) / r.sensor.range
        y = out["raw"][i, 0].cpu().double().numpy()
        ok = (ref > 0) & (ref < r.sensor.white_level) & (np.rint(y * r.sensor.range + r.sensor.black_level)
                                                         < r.sensor.white_level)
        var = r.noise.lambda_shot * np.clip(x, 0, None) + r.noise.lambda_read + 1 / (12 * r.sensor.range ** 2)
        zs.append(((y - x) / np.sqrt(var))[ok])
    return np.concatenate(zs)


def test_noise_free_part_exact_and_noise_statistics(sources, rddm):
    synth = OnTheFlySynth(_cfg(), SEED, "cpu", backend="torch")
    batch = _batch(sources, _cfg())
    z = _noise_free_and_z(synth(batch), batch, synth, {k: s["lq"] for k, s in rddm.items()})
    assert z.size > 20000
    assert abs(z.mean()) < 0.05 and abs(z.var() - 1) < 0.1  # the clean value's 8-bit grid adds ~1/12 DN²


def test_ddnet_mode_and_drawing_recipes_itself(sources, tmp_path):
    cfg = _cfg("ddnet")
    shards = _shards(tmp_path, sources, cfg)
    batch = _batch(sources, cfg)
    del batch["recipe"]  # the synthesiser draws them
    out = OnTheFlySynth(cfg, SEED, "cpu", backend="torch")(batch)
    for i, k in enumerate(out["key"]):
        s = shards[k]
        assert json.loads(json.dumps(out["meta"][i])) == s["meta"] and s["meta"]["degradation"]["applied"] is False
        sensor = SensorParams.from_dict(s["meta"]["sensor"])
        np.testing.assert_array_equal(np.rint(out["raw"][i, 0].numpy().astype(np.float64) * sensor.range
                                              + sensor.black_level), s["raw_dn"])


def test_loader_order_workers_shuffle_and_failures(sources, tmp_path):
    cfg = _cfg()
    keys = [b["key"] for b in make_onthefly_loader(sources, cfg, 4, seed=SEED)]
    assert keys == [["0000000_0000", "0000000_0001", "0000001_0000", "0000001_0001"],
                    ["0000002_0000", "0000002_0001"]]
    a = [k for b in make_onthefly_loader(sources, cfg, 2, seed=SEED, shuffle=True) for k in b["key"]]
    b = [k for b in make_onthefly_loader(sources, cfg, 2, seed=SEED, shuffle=True, num_workers=1) for k in b["key"]]
    assert a == b and sorted(a) == sorted(sum(keys, [])) and a != sum(keys, [])
    bad = tmp_path / "zz_broken.png"
    bad.write_bytes(b"not a png")
    shutil.copy(sources[0].path, tmp_path / "a.png")
    srcs = [Source("a.png", str(tmp_path / "a.png")), Source("zz_broken.png", str(bad))]
    with pytest.raises(InputError):
        list(make_onthefly_loader(srcs, cfg, 4, seed=SEED))
    with pytest.warns(RuntimeWarning) as rec:
        got = list(make_onthefly_loader(srcs, cfg, 4, seed=SEED, handler="warn"))
    assert ["0000001_0000" in str(w.message) for w in rec] == [True, False]  # one warning per bad sample
    assert "0000001_0001" in str(rec[1].message)
    assert [b["key"] for b in got] == [["0000000_0000", "0000000_0001"]]  # the bad source's crops dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_bad = list(make_onthefly_loader(srcs[1:], cfg, 2, seed=SEED, handler="skip"))
    assert only_bad == [None] and OnTheFlySynth(cfg, SEED, "cpu")(None) is None


def test_bad_arguments(sources):
    cfg = _cfg()
    batch = _batch(sources, cfg)
    synth = OnTheFlySynth(cfg, SEED, "cpu", backend="torch")
    with pytest.raises(ConfigError, match="same seed"):
        OnTheFlySynth(cfg, SEED + 1, "cpu")(batch)
    for bad in ({**batch, "srgb": batch["srgb"].float()}, {**batch, "key": batch["key"][:2]},
                {**batch, "srgb": batch["srgb"][..., :63]}, {"srgb": batch["srgb"]}, [batch]):
        with pytest.raises(ShapeError):
            synth(bad)
    with pytest.raises(ShapeError, match="Recipe"):
        synth({**batch, "recipe": [1] * 6})
    for kw in ({"blur": "box"}, {"jpeg": "png"}):
        with pytest.raises(ConfigError):
            OnTheFlySynth(cfg, SEED, "cpu", **kw)
    with pytest.raises(ConfigError):
        OnTheFlySynth({"crop": 64}, SEED)
    with pytest.raises(ConfigError):
        SourceCrops([], cfg)
    with pytest.raises(ConfigError):
        SourceCrops(sources, cfg, handler="ignore")
    with pytest.raises(ConfigError):
        make_onthefly_loader(sources, cfg, 0)
    assert isinstance(batch["recipe"][0], Recipe)


@cuda
def test_cuda_batch_matches_shards_in_distribution(sources, rddm):  # pragma: no cover - needs a GPU
    """On CUDA (batched degradation, Triton IPTP+MNS): meta equal; with the shards' codec (libjpeg) the LQ is
    the CPU chain's within the degradation tests' bound; hq within float rounding; noise statistically right."""
    synth = OnTheFlySynth(_cfg(), SEED, "cuda", jpeg="libjpeg")
    batch = _batch(sources, _cfg())
    out = synth(batch)
    assert out["raw"].is_cuda and out["hq"].is_cuda
    lq = synth.degrade(batch["srgb"].cuda(), batch["recipe"]).cpu()
    for i, k in enumerate(out["key"]):
        s = rddm[k]
        assert json.loads(json.dumps(out["meta"][i])) == s["meta"]
        mse = float(np.mean((lq[i].permute(1, 2, 0).numpy() / 255.0 - s["lq"] / 255.0) ** 2))
        assert mse == 0 or 10 * math.log10(1 / mse) > 40
        assert np.abs(out["hq"][i].cpu().permute(1, 2, 0).numpy() - s["hq"]).max() <= 0.5 / 65535 + 1e-6
    z = _noise_free_and_z(out, batch, synth, {k: lq[i].permute(1, 2, 0).numpy() for i, k in enumerate(out["key"])})
    assert abs(z.mean()) < 0.05 and abs(z.var() - 1) < 0.1


def test_benchmark_scripts_run(capsys, tmp_path):
    """Smoke test of benchmarks/perf/gpu_synthesis.py and loader.py at toy sizes (timings are not checked)."""
    import re

    from benchmarks.perf import gpu_synthesis, loader

    assert gpu_synthesis.main(["--device", "cpu", "--crop", "64", "--batch", "2", "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^batch\s+2:\s+[0-9.]+ pairs/s", out, re.M) and "still owed" in out
    assert loader.main(["--samples", "4", "--crop", "64", "--workers", "0", "--repeats", "1", "--out",
                        str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^workers 0:\s+[0-9.]+ samples/s", out, re.M) and "21 samples/s per GPU" in out  # 16 per 760 ms


def test_dataset_pickles_for_spawned_workers(sources):
    import pickle

    ds = SourceCrops(sources, _cfg(), seed=SEED)
    first = ds[0]
    back = pickle.loads(pickle.dumps(ds))
    again = back[0]
    assert torch.equal(first["srgb"], again["srgb"]) and first["recipe"] == again["recipe"]
