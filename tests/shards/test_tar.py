"""Tar shards: deterministic bytes, sorted members, atomic writes, readable by webdataset and tarfile."""

from __future__ import annotations

import gc
import hashlib
import os
import random
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from rawsynth.errors import ConfigError, InputError
from rawsynth.mns import Pattern
from rawsynth.shards import ShardFile, decode_sample, iter_shard, sha256_file, write_shard

from .helpers import make_sample


@pytest.fixture(scope="module")
def samples():
    patterns = list(Pattern)
    return [make_sample(f"{i:06d}_{i % 3}", i, 32, patterns[i % 4], srgb=i % 2 == 0) for i in range(6)]


def test_write_and_read_back(tmp_path, samples):
    shard = write_shard(tmp_path / "shard-000000.tar", samples)
    assert isinstance(shard, ShardFile)
    assert shard.path == os.fspath(tmp_path / "shard-000000.tar") and shard.count == 6
    assert shard.bytes == os.path.getsize(shard.path) and shard.sha256 == sha256_file(shard.path)
    assert shard.sha256 == hashlib.sha256(Path(shard.path).read_bytes()).hexdigest()
    back = list(iter_shard(shard.path))
    assert back == sorted(samples, key=lambda s: s["__key__"])
    for s in back:
        assert decode_sample(s)["key"] == s["__key__"]
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.tar"]  # no temporary left


def test_deterministic_bytes(tmp_path, samples):
    a = write_shard(tmp_path / "a.tar", samples)
    shuffled = list(samples)
    random.Random(1).shuffle(shuffled)
    b = write_shard(tmp_path / "b.tar", iter(shuffled))  # any order, any iterable
    assert a.sha256 == b.sha256 and Path(a.path).read_bytes() == Path(b.path).read_bytes()
    c = write_shard(tmp_path / "c.tar", samples[:-1])
    assert c.sha256 != a.sha256


def test_members_sorted_and_fixed_headers(tmp_path, samples):
    path = write_shard(tmp_path / "s.tar", samples).path
    with tarfile.open(path) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    split = [n.split(".", 1) for n in names]
    assert split == sorted(split)  # keys ascending, fields ascending within a key
    keys = list(dict.fromkeys(k for k, _ in split))
    assert keys == sorted(s["__key__"] for s in samples)
    for m in members:
        assert m.isreg() and m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.mode == 0o644
        assert m.uname == "rawsynth" and m.gname == "rawsynth"
    assert Path(path).read_bytes()[257:262] == b"ustar"  # plain POSIX tar, not compressed


def test_empty_shard(tmp_path):
    shard = write_shard(tmp_path / "e.tar", [])
    assert shard.count == 0 and list(iter_shard(shard.path)) == []


def test_atomic_when_samples_fail_midway(tmp_path, samples):
    def gen():
        yield samples[0]
        yield samples[1]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_shard(tmp_path / "shard-000001.tar", gen())
    assert list(tmp_path.glob("shard-*.tar")) == [] and list(tmp_path.glob("*.tmp")) == []
    assert os.listdir(tmp_path) == []


def test_atomic_when_writing_fails(tmp_path, samples, monkeypatch):
    final = tmp_path / "shard-000002.tar"
    old = write_shard(final, samples[:2])
    calls = []

    def failing_write(self, obj):
        calls.append(obj["__key__"])
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(self, obj)

    real_write = wds.TarWriter.write
    monkeypatch.setattr(wds.TarWriter, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        write_shard(final, samples)
    assert sorted(os.listdir(tmp_path)) == ["shard-000002.tar"]  # no .tmp; the old shard is untouched
    assert sha256_file(final) == old.sha256


def test_write_validation(tmp_path, samples):
    with pytest.raises(ConfigError, match="twice"):
        write_shard(tmp_path / "d.tar", [samples[0], samples[0]])
    with pytest.raises(ConfigError, match="__key__"):
        write_shard(tmp_path / "d.tar", [{"raw.png": b"x"}])
    with pytest.raises(ConfigError, match="sample key"):
        write_shard(tmp_path / "d.tar", [{"__key__": "a.b", "raw.png": b"x"}])
    with pytest.raises(ConfigError, match="field name"):
        write_shard(tmp_path / "d.tar", [{"__key__": "a", "Raw.PNG": b"x"}])
    with pytest.raises(ConfigError, match="bytes"):
        write_shard(tmp_path / "d.tar", [{"__key__": "a", "raw.png": "text"}])
    with pytest.raises(ConfigError, match="no fields"):
        write_shard(tmp_path / "d.tar", [{"__key__": "a", "__url__": "x"}])
    assert os.listdir(tmp_path) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # webdataset leaves files open
def test_webdataset_reads_our_tar(tmp_path, samples):
    path = write_shard(tmp_path / "shard-000000.tar", samples).path
    got = list(wds.WebDataset(path, shardshuffle=False))
    gc.collect()
    assert [s["__key__"] for s in got] == sorted(s["__key__"] for s in samples)
    by_key = {s["__key__"]: s for s in samples}
    for s in got:
        fields = {k: v for k, v in s.items() if not k.startswith("__")}
        assert fields == {k: v for k, v in by_key[s["__key__"]].items() if k != "__key__"}
        assert decode_sample(s)["key"] == s["__key__"]


def test_iter_shard_errors(tmp_path, samples):
    with pytest.raises(InputError) as e:
        list(iter_shard(tmp_path / "missing.tar"))
    assert e.value.reason == "unreadable"
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(InputError) as e:
        list(iter_shard(tmp_path / "junk.tar"))
    assert e.value.reason == "corrupt shard"
    data = Path(write_shard(tmp_path / "s.tar", samples).path).read_bytes()
    with tarfile.open(tmp_path / "s.tar") as tf:
        boundary = tf.getmembers()[3].offset  # a header start: tarfile alone would stop there silently
    for cut in (len(data) // 2, boundary, boundary + 100):
        (tmp_path / "t.tar").write_bytes(data[:cut])
        with pytest.raises(InputError) as e:
            list(iter_shard(tmp_path / "t.tar"))
        assert e.value.reason == "truncated", cut
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("a.raw.png", "b.raw.png", "a.hq.png"):
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    (tmp_path / "n.tar").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="contiguous"):
        list(iter_shard(tmp_path / "n.tar"))
