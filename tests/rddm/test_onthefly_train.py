"""Training from pairs synthesised on the fly (``data.onthefly``): the stream against the shards ``rawsynth
generate`` writes for the same sources, config and seed (read by the shard stream with the same crops and flips),
exact resume of ``rddm train-ddnet`` through the CLI, ``rddm train-rvae`` on synthesised ``rddm``-mode pairs, the
per-rank split of an epoch, and config errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rddm.cli import main
from rddm.config import DataConfig, DDNetTrainConfig, OnTheFlyConfig, config_from_dict
from rddm.errors import ConfigError, DataError
from rddm.train.core import BatchStream, OnTheFlyStream, make_stream, resolve_data

from .conftest import tiny_train_config, write_yaml

SEED = 5


def _list_file(tmp: Path, n: int) -> Path:
    """A list file naming the first ``n`` bundled photos (as ``rawsynth generate`` takes them)."""
    from rawsynth.sources import bundled_sources

    p = tmp / "photos.txt"
    p.write_text("".join(f"{s.path}\n" for s in sorted(bundled_sources())[:n]))
    return p


def _batch_json(batch: dict) -> list:
    return json.loads(json.dumps(batch["meta"]))


def test_stream_equals_the_shards_of_rawsynth_generate(tmp_path):
    """rddm mode, 3 sources × 2 crops, random 48² crops (odd offsets) and flips, over an epoch boundary: keys,
    patterns and every meta.json field (recipe, source, crop box, augmentation) equal the shard stream's; raw is
    bitwise the shards' (same DN), hq within the 16-bit PNG rounding of hq.png."""
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig
    from rawsynth.sources import collect_sources

    photos = _list_file(tmp_path, 3)
    synth = write_yaml(tmp_path / "synth.yaml", {"crop": 64, "crops_per_image": 2, "small_policy": "reflect"})
    generate(collect_sources([str(photos)]), tmp_path / "shards",
             SynthConfig(mode="rddm", crop=64, crops_per_image=2, small_policy="reflect"), seed=SEED, shard_size=2,
             workers=1, progress=False)
    base = DataConfig(mode="rddm", crop=48, flips=True, shuffle=0, num_workers=0)
    shard_stream = make_stream(dataclasses.replace(base, shards=(str(tmp_path / "shards"),)), 2, SEED)
    fly = make_stream(dataclasses.replace(base, onthefly=OnTheFlyConfig(sources=(str(photos),),
                                                                         synth_config=str(synth))), 2, SEED)
    assert isinstance(shard_stream, BatchStream) and isinstance(fly, OnTheFlyStream)
    assert fly.synth_config == SynthConfig(mode="rddm", crop=64, crops_per_image=2, small_policy="reflect")
    keys, tops = [], []
    for _ in range(4):
        a, b = shard_stream.next(), fly.next()
        assert b["key"] == a["key"] and b["pattern"] == a["pattern"] and fly.position == shard_stream.position
        assert _batch_json(b) == _batch_json(a)
        assert b["raw"].shape == a["raw"].shape == (2, 1, 48, 48) and b["hq"].shape == (2, 3, 48, 48)
        assert torch.equal(b["raw"], a["raw"])
        assert (b["hq"] - a["hq"]).abs().max() <= 0.5 / 65535 + 1e-7
        keys += b["key"]
        tops += [m["augment"][0]["top"] for m in b["meta"]]
    assert fly.position == (1, 1) and keys[:6] == sorted(keys[:6]) and keys[6:] == keys[:2]
    assert any(t % 2 for t in tops)  # crops at odd offsets: the Bayer pattern shifted like the shards'


def _resumed_copy(a: Path, b: Path, last: int) -> None:
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / f"step-{last:06d}")
    shutil.rmtree(b / "ddnet")
    (b / "train_summary.json").unlink()


def test_train_ddnet_on_the_fly_resumes_exactly(tmp_path):
    """`rddm train-ddnet` with data.onthefly (the 8 bundled photos, shuffled, flips, a loader worker): 6 steps
    straight == 3 steps, then a new run resumed from the step-3 checkpoint (mid-epoch; the rest crosses into
    epoch 1): bitwise the same weights, optimizer state and losses."""
    from safetensors.torch import load_file

    d = tiny_train_config("ddnet", tensorboard=False, max_steps=6, save_every=3)
    d["data"].update(shuffle=4, flips=True, num_workers=1, onthefly={"sources": []})
    cfg = write_yaml(tmp_path / "c.yaml", d)
    a, b = tmp_path / "straight", tmp_path / "resumed"
    args = ["train-ddnet", "--config", str(cfg), "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(a)]) == 0
    _resumed_copy(a, b, 6)
    assert main([*args, "--out", str(b), "--resume"]) == 0
    wa, wb = (load_file(str(o / "ddnet" / "diffusion_pytorch_model.safetensors")) for o in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = (torch.load(o / "checkpoints/step-000006/training_state.pt", weights_only=True) for o in (a, b))
    assert all(torch.equal(x, y) for x, y in zip(sa["optimizer"]["state"][0].values(),
                                                   sb["optimizer"]["state"][0].values()))
    rows = [[{k: v for k, v in json.loads(ln).items() if k != "steps_per_s"}
             for ln in (o / "metrics.jsonl").read_text().splitlines()] for o in (a, b)]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [1, 2, 3, 4, 5, 6]
    for step, pos in ((3, [0, 3]), (6, [1, 2])):  # 8 samples / batch 2: 4 batches an epoch
        state = json.loads((a / f"checkpoints/step-{step:06d}/trainer_state.json").read_text())
        assert state["positions"] == [pos]
    saved = config_from_dict(DDNetTrainConfig, yaml.safe_load((a / "config.yaml").read_text()))
    assert saved.data.onthefly == OnTheFlyConfig() and saved.data.shards == ()


def _keys(stream: OnTheFlyStream, batches: int) -> list[str]:
    return [k for _ in range(batches) for k in stream.next()["key"]]


def test_ranks_get_disjoint_shares_covering_the_epoch():
    data = DataConfig(mode="ddnet", crop=16, shuffle=8, num_workers=0, onthefly=OnTheFlyConfig(sources=()))
    src = resolve_data(data)  # the 8 bundled photos: 8 samples an epoch
    streams = [OnTheFlyStream(src, 2, SEED, rank=r, world_size=2) for r in range(2)]
    epochs = [[_keys(s, 2) for s in streams] for _ in range(2)]  # per epoch: 2 batches of 2 on each rank
    everything = [f"{i:07d}_0000" for i in range(8)]
    for e in epochs:
        assert not set(e[0]) & set(e[1]) and sorted(e[0] + e[1]) == everything
    assert epochs[0] != epochs[1]  # a new order every epoch, from (seed, epoch) alone
    assert [streams[r].position for r in range(2)] == [(1, 2), (1, 2)]
    again = OnTheFlyStream(src, 2, SEED, rank=1, world_size=2)
    assert _keys(again, 4) == epochs[0][1] + epochs[1][1]
    # three ranks: 2 samples each (8 // 3), disjoint; two of the epoch's samples are left out
    three = [OnTheFlyStream(src, 2, SEED, rank=r, world_size=3).epoch_indices(0) for r in range(3)]
    assert [len(x) for x in three] == [2, 2, 2] and len(set(sum(three, []))) == 6
    # resume mid-epoch: the batch at a position is the same, bitwise, without replaying the ones before it
    fresh = OnTheFlyStream(src, 2, SEED, rank=1, world_size=2)
    for _ in range(3):
        want = fresh.next()
    got = OnTheFlyStream(src, 2, SEED, (1, 0), rank=1, world_size=2).next()
    assert got["key"] == want["key"] and torch.equal(got["raw"], want["raw"]) and torch.equal(got["hq"], want["hq"])
    assert got["meta"] == want["meta"] and got["meta"][0]["augment"][0]["height"] == 16


def test_config_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="both set"):
        config_from_dict(DDNetTrainConfig, {"data": {"shards": ["x"], "onthefly": {}}})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(DDNetTrainConfig, {"data": {"onthefly": {"source": ["x"]}}})
    with pytest.raises(ConfigError, match="data.onthefly.samples"):
        OnTheFlyConfig(samples=0)
    with pytest.raises(DataError, match="no training shards given"):
        resolve_data(DataConfig())
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match="no such file or folder") as e:
        resolve_data(DataConfig(onthefly=OnTheFlyConfig(sources=(str(missing),))))
    assert e.value.path == str(missing) and "data.onthefly.sources" in e.value.fix
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        resolve_data(DataConfig(onthefly=OnTheFlyConfig(sources=(str(tmp_path / "empty"),))))
    rddm_yaml = write_yaml(tmp_path / "rddm.yaml", {"mode": "rddm", "crop": 64})
    with pytest.raises(ConfigError, match="'rddm'-mode pairs; this stage trains on 'ddnet'"):
        resolve_data(DataConfig(mode="ddnet", onthefly=OnTheFlyConfig(synth_config=str(rddm_yaml))))
    with pytest.raises(ConfigError, match=r"data.crop \(128\) is larger"):
        resolve_data(DataConfig(mode="rddm", crop=128, onthefly=OnTheFlyConfig(synth_config=str(rddm_yaml))))
    with pytest.raises(ConfigError, match="cannot read the synthesis config"):
        resolve_data(DataConfig(onthefly=OnTheFlyConfig(synth_config=str(tmp_path / "none.yaml"))))
    bad = write_yaml(tmp_path / "bad.yaml", {"crops_per_image": 0})
    with pytest.raises(ConfigError, match="invalid synthesis config"):
        resolve_data(DataConfig(onthefly=OnTheFlyConfig(synth_config=str(bad))))
    data = DataConfig(mode="ddnet", crop=16, onthefly=OnTheFlyConfig(samples=9))
    with pytest.raises(ConfigError, match="num_samples=9 exceeds"):
        OnTheFlyStream(data, 2, SEED)
    with pytest.raises(DataError, match="not one full batch of 4"):
        OnTheFlyStream(dataclasses.replace(data, onthefly=OnTheFlyConfig(samples=7)), 4, SEED, world_size=2)
    # the CLI: --shards with an on-the-fly config, and a config with neither (exit status 2, one line)
    d = tiny_train_config("ddnet")
    d["data"]["onthefly"] = {"sources": [str(missing)]}
    cfg = write_yaml(tmp_path / "c.yaml", d)
    base = ["train-ddnet", "--config", str(cfg), "--device", "cpu", "--no-progress", "--out", str(tmp_path / "o")]
    assert main([*base, "--shards", str(tmp_path)]) == 2
    assert "data.shards and data.onthefly are both set" in capsys.readouterr().err
    assert main(base) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file or folder" in err and not (tmp_path / "o").exists()


def test_train_rvae_on_the_fly_rddm_pairs(sd_folder, lpips_folder, tmp_path):
    """`rddm train-rvae` (data.mode any) synthesises rddm-mode pairs (the degradation path) at data.crop and trains
    on them; the saved config says where the data came from."""
    from rddm.config import RVAETrainConfig
    from rddm.train.rvae import train_rvae

    d = tiny_train_config("rvae", tensorboard=False, max_steps=2, save_every=2)
    d["data"]["onthefly"] = {"sources": [str(_list_file(tmp_path, 2))], "samples": 2}
    d["model"] = {"sd_model": str(sd_folder)}
    d["loss"]["lpips_weights"] = str(lpips_folder)
    d["loss"]["disc_start"] = 1  # inside the 2-step run (a term that never starts is a start-up error)
    cfg = config_from_dict(RVAETrainConfig, d)
    assert resolve_data(cfg.data).synth.mode.value == "rddm" and resolve_data(cfg.data).synth.crop == 32
    summary = train_rvae(cfg, tmp_path / "o", device="cpu", progress=False)
    assert summary["step"] == 2
    rows = [json.loads(ln) for ln in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(v) for r in rows for v in r.values())
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())["data"]["onthefly"]
    assert saved["samples"] == 2 and saved["sources"] == d["data"]["onthefly"]["sources"]
