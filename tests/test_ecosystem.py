"""Shards as other software reads them (issue 19): the JSON schema of meta.json, Hugging Face ``datasets`` and plain
webdataset default decoders reading exact arrays (checked against an independent OpenCV/numpy decode), version-1
shards still read, and fsspec output/input (``memory://``) with resume and inspect."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import cv2
import fsspec
import numpy as np
import pytest
import skimage.data

from rawsynth.data import make_dataset
from rawsynth.generate import generate, load_manifest
from rawsynth.inspect import inspect_dataset, preview_dataset
from rawsynth.pipeline import SynthConfig
from rawsynth.shards import decode_sample, iter_shard, legacy_meta, meta_schema
from rawsynth.sources import collect_sources

# rddm mode: kernels of several kinds, orders with and without JPEG (the fields that flipped type in version 1)
CFG = SynthConfig(crop=32, crops_per_image=4, save_srgb=True)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src")
    for name in ("astronaut", "chelsea"):
        cv2.imwrite(str(d / f"{name}.png"), cv2.cvtColor(getattr(skimage.data, name)()[:96, :96], cv2.COLOR_RGB2BGR))
    return d


@pytest.fixture(scope="module")
def dataset(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "out"
    s = generate(collect_sources([src]), out, CFG, seed=3, shard_size=4, progress=False)
    assert (s.samples, s.failures, s.shards) == (8, 0, 2)
    return out


def _members(out: Path) -> dict[str, dict[str, bytes]]:
    """Every sample's members, read with tarfile only."""
    samples: dict[str, dict[str, bytes]] = {}
    for tar in sorted(out.glob("shard-*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf:
                key, field = m.name.split(".", 1)
                samples.setdefault(key, {})[field] = tf.extractfile(m).read()
    return samples


def _npy_independent(data: bytes) -> np.ndarray:
    """Decode a .npy from its documented layout (magic, header length, dict header, raw little-endian data)."""
    assert data[:6] == b"\x93NUMPY" and data[6:8] == b"\x01\x00"
    n = int.from_bytes(data[8:10], "little")
    header = eval(data[10:10 + n].decode("latin1"), {})  # noqa: S307 - a literal dict written by us
    assert header["descr"] == "<u2" and header["fortran_order"] is False
    return np.frombuffer(data[10 + n:], "<u2").reshape(header["shape"])


def _png8_cv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]


def test_every_meta_validates_against_the_json_schema(dataset):
    jsonschema = pytest.importorskip("jsonschema")
    schema = meta_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    samples = _members(dataset)
    assert len(samples) == 8
    types: dict[tuple, set] = {}

    def walk(v, path=()):
        types.setdefault(path, set()).add(type(v).__name__)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, (*path, k))

    for key, s in samples.items():
        meta = json.loads(s["meta.json"])
        errors = [e.message for e in validator.iter_errors(meta)]
        assert not errors, (key, errors)
        assert meta["format_version"] == 2
        walk(meta)
    # one JSON type per field across samples, and no null anywhere
    assert all(len(t) == 1 for t in types.values()), {p: t for p, t in types.items() if len(t) > 1}
    assert not any("NoneType" in t for t in types.values())
    # the sentinels are really used here: an order without JPEG (0), a kernel kind without beta (0.0) or no kernel
    metas = [json.loads(s["meta.json"]) for s in samples.values()]
    assert any(m["degradation"]["second"]["jpeg_quality"] == 0 for m in metas)
    # and the version-1 form comes back (null for absent values) for the parameter classes
    from rawsynth.degrade import DegradationParams

    for m in metas:
        DegradationParams.from_dict(legacy_meta(m)["degradation"])


def test_hugging_face_datasets_reads_exact_arrays(dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in dataset.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == 8
    assert {"raw.npy", "hq.npy", "meta.json", "lq.png", "gt.png"} <= set(ds.column_names)
    truth = _members(dataset)
    for row in ds.with_format("numpy"):
        key = str(row["__key__"])
        t = truth[key]
        raw = np.asarray(row["raw.npy"])  # datasets infers int64 lists: every value exact, cast to uint16 losslessly
        hq = np.asarray(row["hq.npy"])
        assert raw.dtype.kind in "iu" and np.array_equal(raw, _npy_independent(t["raw.npy"]))
        assert hq.dtype.kind in "iu" and hq.shape == (32, 32, 3)
        assert np.array_equal(hq, _npy_independent(t["hq.npy"]))
        assert raw.max() > 255 and hq.max() > 255  # really 16-bit
    for row in ds:  # images as PIL (the Image feature): exact 8-bit values
        t = truth[row["__key__"]]
        assert np.array_equal(np.asarray(row["lq.png"]), _png8_cv(t["lq.png"]))
        assert np.array_equal(np.asarray(row["gt.png"]), _png8_cv(t["gt.png"]))
        assert row["meta.json"]["key"] == row["__key__"] and row["meta.json"]["format_version"] == 2


def test_webdataset_default_decoders_read_exact_arrays(dataset):
    import webdataset as wds

    truth = _members(dataset)
    urls = sorted(str(p) for p in dataset.glob("shard-*.tar"))
    for spec in ("rgb8", "pil", "torchrgb"):
        n = 0
        for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(spec):
            t = truth[s["__key__"]]
            assert isinstance(s["raw.npy"], np.ndarray) and s["raw.npy"].dtype == np.uint16
            assert np.array_equal(s["raw.npy"], _npy_independent(t["raw.npy"]))
            assert np.array_equal(s["hq.npy"], _npy_independent(t["hq.npy"]))
            assert isinstance(s["meta.json"], dict) and s["meta.json"]["key"] == s["__key__"]
            if spec == "rgb8":
                assert np.array_equal(s["lq.png"], _png8_cv(t["lq.png"]))
            n += 1
        assert n == 8


def test_png_members_are_claimed_by_no_pil_decoder(src, tmp_path):
    """--members png: 16-bit PNG under raw.png16/hq.png16; webdataset's image decoders leave the bytes alone and
    OpenCV reads them exactly; rawsynth reads both member formats to the same arrays."""
    import webdataset as wds

    cfg = SynthConfig(crop=32, crops_per_image=1, mode="ddnet")
    a = generate(collect_sources([src]), tmp_path / "npy", cfg, seed=1, shard_size=4, progress=False)
    b = generate(collect_sources([src]), tmp_path / "png", SynthConfig(crop=32, crops_per_image=1, mode="ddnet",
                                                                         members="png"),
                 seed=1, shard_size=4, progress=False)
    assert a.samples == b.samples == 2
    (s,) = list(wds.WebDataset(str(tmp_path / "png" / "shard-000000.tar"), shardshuffle=False).decode("rgb"))[:1]
    assert isinstance(s["raw.png16"], bytes) and isinstance(s["hq.png16"], bytes)
    pairs = zip(iter_shard(tmp_path / "npy" / "shard-000000.tar"), iter_shard(tmp_path / "png" / "shard-000000.tar"))
    for x, y in pairs:
        dx, dy = decode_sample(x), decode_sample(y)
        assert np.array_equal(dx["raw_dn"], dy["raw_dn"]) and np.array_equal(dx["hq"], dy["hq"])
        assert np.array_equal(cv2.imdecode(np.frombuffer(y["raw.png16"], np.uint8), cv2.IMREAD_UNCHANGED), dx["raw_dn"])
        assert x["meta.json"] == y["meta.json"]
        meta = json.loads(x["meta.json"])  # ddnet: the identity degradation, in the same schema
        assert meta["degradation"]["applied"] is False and legacy_meta(meta)["degradation"] is None
        jsonschema = pytest.importorskip("jsonschema")
        jsonschema.validate(meta, meta_schema(), cls=jsonschema.Draft202012Validator)


# SHA-256 of the first shard `rawsynth generate --out OUT --crop 64 --crops-per-image 2 --shard-size 4
# --num-samples 6 --save-srgb --seed 0` (bundled photos) wrote before format version 2 (commit 3e2bdd5; its second
# shard was 0b36a1c2…). A shard's bytes do not depend on later samples, so 4 samples reproduce it.
V1_SHA256 = {"shard-000000.tar": "a71c85adc83e7c4b9333acda872df5bb516a7f228a586f226962e492d8f67211"}


@pytest.fixture(scope="module")
def v1_dataset(tmp_path_factory) -> Path:
    """Version-1 shards, byte-identical to those of the release before format 2 (checked against its hashes)."""
    from rawsynth.cli import main

    out = tmp_path_factory.mktemp("v1") / "out"
    assert main(["generate", "--out", str(out), "--crop", "64", "--crops-per-image", "2", "--shard-size", "4",
                 "--num-samples", "4", "--save-srgb", "--seed", "0", "--format-version", "1", "--no-progress"]) == 0
    return out


def test_format_1_is_the_former_release_byte_for_byte(v1_dataset):
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(v1_dataset.glob("shard-*.tar"))}
    assert got == V1_SHA256
    assert load_manifest(v1_dataset)["format_version"] == 1


def test_version_1_shards_still_read(v1_dataset, tmp_path):
    rep = inspect_dataset(v1_dataset)
    assert rep.ok and rep.samples == 4 and rep.jpeg
    n = 0
    for s in make_dataset(str(v1_dataset / "shard-000000.tar"), crop=16):
        assert s["raw"].shape == (1, 16, 16) and s["hq"].shape == (3, 16, 16)
        n += 1
    assert n == 4
    assert preview_dataset(v1_dataset, tmp_path / "p.png", n=2, size=32).exists()
    for raw in iter_shard(v1_dataset / "shard-000000.tar"):
        assert "raw.png" in raw and "format_version" not in json.loads(raw["meta.json"])
        d = decode_sample(raw)
        assert np.array_equal(d["raw_dn"], cv2.imdecode(np.frombuffer(raw["raw.png"], np.uint8), cv2.IMREAD_UNCHANGED))


def test_memory_url_generate_resume_inspect_and_read(src, tmp_path):
    """generate → memory:// (tar first, stats last, manifest) → a lost shard → --resume redoes only it →
    inspect and the training reader read the URL; the bytes equal a local run's."""
    fs = fsspec.filesystem("memory")
    url = "memory://bucket/run19"
    cfg = SynthConfig(crop=32, crops_per_image=2, mode="ddnet")
    local = generate(collect_sources([src]), tmp_path / "local", cfg, seed=2, shard_size=2, progress=False)
    s = generate(collect_sources([src]), url, cfg, seed=2, shard_size=2, progress=False)
    assert (s.samples, s.shards) == (local.samples, local.shards) == (4, 2)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/bucket/run19", detail=False))
    assert names == ["manifest.json", "shard-000000.stats.json", "shard-000000.tar", "shard-000001.stats.json",
                     "shard-000001.tar"]
    for i in range(2):
        name = f"shard-{i:06d}.tar"
        assert fs.cat_file(f"/bucket/run19/{name}") == (tmp_path / "local" / name).read_bytes()
    assert load_manifest(url)["complete"]
    rep = inspect_dataset(url)
    assert rep.ok and rep.samples == 4
    # damage: one shard's tar is replaced by garbage, the other's stats lost → resume redoes both, keeps nothing bad
    fs.pipe_file("/bucket/run19/shard-000001.tar", b"garbage")
    assert not inspect_dataset(url).ok
    fs.pipe_file("/bucket/run19/shard-000000.tar.abc.tmp", b"leftover")
    s2 = generate(collect_sources([src]), url, cfg, seed=2, shard_size=2, resume=True, progress=False)
    assert s2.skipped_shards == 1 and s2.redone_shards == 1
    assert not fs.exists("/bucket/run19/shard-000000.tar.abc.tmp")
    assert fs.cat_file("/bucket/run19/shard-000001.tar") == (tmp_path / "local" / "shard-000001.tar").read_bytes()
    assert inspect_dataset(url).ok
    keys = sorted(x["key"] for x in make_dataset(url + "/shard-{000000..000001}.tar"))
    assert len(keys) == 4
    assert preview_dataset(url, tmp_path / "p.png", n=2, size=32).exists()
    # the member checksums are checked on URLs too
    tar = fs.cat_file("/bucket/run19/shard-000000.tar")
    buf = io.BytesIO(tar)
    with tarfile.open(fileobj=buf) as tf:
        m = next(m for m in tf if m.name.endswith("meta.json"))
    data = bytearray(tar)
    pos = m.offset_data + data[m.offset_data:m.offset_data + m.size].index(b'"seed": 2')
    data[pos + 8] = ord("7")
    fs.pipe_file("/bucket/run19/shard-000000.tar", bytes(data))
    with pytest.raises(Exception, match="checksum mismatch"):
        list(make_dataset(url + "/shard-000000.tar"))
    fs.rm("/bucket/run19", recursive=True)


@pytest.fixture
def s3_server(monkeypatch):
    """A local S3-compatible server (moto's, standing in for AWS S3) with a bucket; fsspec's s3:// points at it."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
                                                   "skip_instance_cache": True})
    fs = fsspec.filesystem("s3")
    fs.mkdir("rawsynth-test")
    try:
        yield fs
    finally:
        server.stop()


def test_s3_generate_resume_inspect_and_read(src, tmp_path, s3_server):
    fs = s3_server
    url = "s3://rawsynth-test/runs/a"
    cfg = SynthConfig(crop=32, crops_per_image=1, mode="ddnet")
    s = generate(collect_sources([src]), url, cfg, seed=4, shard_size=1, progress=False)
    assert (s.samples, s.shards) == (2, 2)
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("rawsynth-test/runs/a", detail=False)) == [
        "manifest.json", "shard-000000.stats.json", "shard-000000.tar", "shard-000001.stats.json", "shard-000001.tar"]
    fs.rm("rawsynth-test/runs/a/shard-000001.stats.json")  # as if killed between its tar and its stats
    s2 = generate(collect_sources([src]), url, cfg, seed=4, shard_size=1, resume=True, progress=False)
    assert s2.skipped_shards == 1 and s2.samples == 1
    assert inspect_dataset(url).ok
    assert len(list(make_dataset(url + "/shard-{000000..000001}.tar"))) == 2


def test_unknown_protocol_is_a_config_error_before_any_work(src):
    from rawsynth.errors import ConfigError

    with pytest.raises(ConfigError, match="nosuchproto"):
        generate(collect_sources([src]), "nosuchproto://bucket/x", CFG, progress=False)


def test_members_benchmark(dataset):
    """benchmarks/perf/members.py: both codecs decode exactly; a .npy is its 128-byte header plus the raw data."""
    from benchmarks.perf.members import measure

    rows = {(r["member"], r["codec"]): r for r in measure(str(dataset / "shard-000000.tar"), repeat=1)}
    assert set(rows) == {("raw", "png16"), ("raw", "npy"), ("hq", "png16"), ("hq", "npy")}
    assert rows["raw", "npy"]["bytes"] == 128 + 2 * 32 * 32 and rows["hq", "npy"]["bytes"] == 128 + 2 * 32 * 32 * 3
    assert all(r["encode_ms"] >= 0 and r["decode_ms"] >= 0 for r in rows.values())


def test_url_conflicts_name_the_url(src):
    from rawsynth.errors import ConfigError

    url = "memory://bucket/conflict"
    cfg = SynthConfig(crop=32, crops_per_image=1, mode="ddnet")
    generate(collect_sources([src]), url, cfg, seed=0, shard_size=2, num_samples=1, progress=False)
    with pytest.raises(ConfigError, match="memory://bucket/conflict.*--resume"):
        generate(collect_sources([src]), url, cfg, seed=0, shard_size=2, num_samples=1, progress=False)
    fsspec.filesystem("memory").rm("/bucket/conflict", recursive=True)
