"""Attacks on ``rawsynth generate`` and the shard reader (issue 13): concurrent runs, corrupt shards kept by
``--resume``, non-regular and non-UTF-8 sources, SIGTERM/SIGKILL with a worker pool, bit flips inside a sample.

Each test reproduces a failure seen on the code before the fix (see ``docs/reliability.md``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rawsynth.errors import ConfigError, InputError
from rawsynth.generate import generate
from rawsynth.inspect import inspect_dataset
from rawsynth.pipeline import SynthConfig
from rawsynth.sources import collect_sources

from .conftest import photo_sources, shard_tree

CFG = SynthConfig(crop=64, crops_per_image=2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return photo_sources(tmp_path_factory.mktemp("src"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rawsynth", "generate", *args, "--no-progress"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1")


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------ the run lock


def test_a_second_run_into_a_busy_out_is_refused_naming_the_holder(src, tmp_path, capsys):
    out = tmp_path / "out"
    args = _cli(str(src), "--crop", "128", "--crops-per-image", "40", "--shard-size", "1", "--workers", "1",
                "--seed", "0", "--out", str(out))
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(list(out.glob("*.stats.json"))) >= 1, proc)
        for kw in ({"overwrite": True, "seed": 1}, {"resume": True, "seed": 0}):
            with pytest.raises(ConfigError) as e:
                generate(collect_sources([src]), out, SynthConfig(crop=128, crops_per_image=40),
                         shard_size=1, progress=False, **kw)
            msg = str(e.value)
            assert f"PID {proc.pid}" in msg and socket.gethostname() in msg, msg
        assert proc.poll() is None  # the first run goes on untouched
    finally:
        proc.kill()
        proc.wait()
    # the lock of the killed run is stale: detected (same host, dead PID) and taken over
    capsys.readouterr()
    s = generate(collect_sources([src]), out, SynthConfig(crop=64), num_samples=1, overwrite=True, progress=False)
    assert s.samples == 1 and f"stale lock of process {proc.pid}" in capsys.readouterr().err
    assert not list(out.glob(".rawsynth.lock*"))


def test_a_lock_from_another_host_is_reported_with_the_fix(src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".rawsynth.lock").write_text(json.dumps({"pid": 4242, "host": "elsewhere.example", "started": 0}))
    with pytest.raises(ConfigError, match=r"PID 4242 on host elsewhere\.example.*delete .*\.rawsynth\.lock"):
        generate(collect_sources([src]), out, CFG, progress=False)


def test_of_many_concurrent_lockers_exactly_one_wins(tmp_path):
    code = ("import sys, time\nfrom rawsynth.runlock import RunLock\ntry:\n    RunLock(sys.argv[1]).acquire()\n"
            "    print('won', flush=True)\n    time.sleep(3)\nexcept Exception as e:\n    print(type(e).__name__)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=_env(), stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    assert sorted(p.communicate(timeout=60)[0].strip() for p in procs) == ["ConfigError"] * 5 + ["won"]
    # the winner exited without releasing: its lock is stale and the next run takes it over
    from rawsynth.runlock import LOCK_NAME, RunLock

    with RunLock(tmp_path) as lock:
        assert lock.took_over and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- resume adopts only good shards


def test_resume_redoes_a_bit_flipped_shard(src, tmp_path):
    out = tmp_path / "out"
    srcs = collect_sources([src])
    generate(srcs, out, CFG, seed=3, shard_size=2, progress=False)
    good = shard_tree(out)
    p = out / "shard-000001.tar"
    data = bytearray(p.read_bytes())
    data[3000] ^= 0x10  # inside the first member's data: same size, different bytes
    p.write_bytes(bytes(data))
    assert not inspect_dataset(out).ok
    s = generate(srcs, out, CFG, seed=3, shard_size=2, resume=True, progress=False)
    assert (s.skipped_shards, s.redone_shards, s.samples) == (2, 1, 2)
    assert "1 redone" in s.line()
    assert inspect_dataset(out).ok and shard_tree(out) == good


def test_out_parents_are_created(src, tmp_path):
    s = generate(collect_sources([src]), tmp_path / "a" / "b" / "out", CFG, num_samples=1, progress=False)
    assert s.samples == 1 and (tmp_path / "a" / "b" / "out" / "manifest.json").is_file()


# --------------------------------------------------------------------------------------------- sources


def test_a_fifo_in_a_list_is_a_failure_row_within_a_second(src, tmp_path):
    from rawsynth.generate import _load_source
    from rawsynth.sources import Source

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "list.txt").write_text(f"{src / 'chelsea.png'}\n{fifo}\n")

    def hang(*_):
        raise TimeoutError("opening the FIFO hung")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)  # the old code blocks in open() forever; the alarm turns that into a failure
    try:
        t0 = time.perf_counter()
        with pytest.raises(InputError, match="not a regular file"):
            _load_source(Source(str(fifo), str(fifo)))
        assert time.perf_counter() - t0 < 1.0
        s = generate(collect_sources([tmp_path / "list.txt"]), tmp_path / "out", SynthConfig(crop=64),
                     progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert (s.samples, s.failures) == (1, 1)
    rows = [f for p in (tmp_path / "out").glob("*.stats.json") for f in json.loads(p.read_text())["failures"]]
    assert [(Path(r["source"]).name, r["reason"]) for r in rows] == [("pipe.png", "not a regular file")]


def test_a_fifo_in_a_folder_is_a_failure_row(src, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "chelsea.png").write_bytes((src / "chelsea.png").read_bytes())
    os.mkfifo(d / "pipe.jpg")
    s = generate(collect_sources([d]), tmp_path / "out", SynthConfig(crop=64), progress=False)
    assert (s.samples, s.failures) == (1, 1)


def test_a_non_utf8_file_name_is_kept_and_recorded_losslessly(src, tmp_path):
    from rawsynth.shards import decode_sample, iter_shard
    from rawsynth.sources import name_to_bytes

    d = tmp_path / "d"
    d.mkdir()
    raw_name = b"caf\xe9 \\x41.png"  # Latin-1 e-acute (not UTF-8) and a literal backslash
    with open(os.path.join(os.fsencode(d), raw_name), "wb") as f:
        f.write((src / "chelsea.png").read_bytes())
    s = generate(collect_sources([d]), tmp_path / "out", SynthConfig(crop=64), progress=False)
    assert (s.samples, s.failures) == (1, 0)
    [sample] = list(iter_shard(tmp_path / "out" / "shard-000000.tar"))
    source = decode_sample(sample)["meta"]["source"]
    assert name_to_bytes(source["path"], source.get("path_escaped", False)) == os.fsencode(d) + b"/" + raw_name
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"] == [source["path"]]


def test_a_gif_in_a_folder_is_used_like_a_gif_named_directly(src, tmp_path):
    from PIL import Image

    d = tmp_path / "d"
    d.mkdir()
    Image.open(src / "chelsea.png").convert("RGB").save(d / "cat.gif")
    from_folder = collect_sources([d])
    assert [Path(s.name).name for s in from_folder] == ["cat.gif"]
    assert collect_sources([d / "cat.gif"]) == from_folder
    s = generate(from_folder, tmp_path / "out", SynthConfig(crop=64), progress=False)
    assert (s.samples, s.failures) == (1, 0)


# ------------------------------------------------------------------------------------------------ signals


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


KILL_CFG = SynthConfig(crop=128, crops_per_image=8)


@pytest.fixture(scope="module")
def straight(src, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("straight") / "out"
    generate(collect_sources([src]), out, KILL_CFG, seed=5, shard_size=2, progress=False)
    return shard_tree(out)


@pytest.mark.parametrize("sig,workers", [(signal.SIGTERM, 2), (signal.SIGKILL, 2), (signal.SIGTERM, 1)],
                         ids=["SIGTERM-2", "SIGKILL-2", "SIGTERM-1"])
def test_a_killed_run_leaves_no_orphan_and_resumes_identical(src, tmp_path, straight, sig, workers):
    out = tmp_path / "out"
    args = _cli(str(src), "--crop", "128", "--crops-per-image", "8", "--shard-size", "2", "--workers", str(workers),
                "--seed", "5", "--out", str(out))
    with open(tmp_path / "stderr", "wb") as err_file:  # not a pipe: orphaned workers would hold it open
        proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        children = workers if workers > 1 else 0
        _wait_for(lambda: len(list(out.glob("*.stats.json"))) >= 1 and len(_descendants(proc.pid)) >= children, proc)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    err = (tmp_path / "stderr").read_text()
    gone, alive = psutil.wait_procs(workers, timeout=5)
    for p in alive:  # the old code left them running (writing into --out), forever
        p.kill()
    assert not alive, f"orphaned workers 5 s after {sig.name}: {alive}"
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "terminated" in err and "--resume" in err, err
        assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
        manifest = json.loads((out / "manifest.json").read_text())
        done = {p.name.replace(".stats.json", ".tar") for p in out.glob("*.stats.json")}
        assert {e["name"] for e in manifest["shards"] if e["sha256"]} == done and not manifest["complete"]
    s = generate(collect_sources([src]), out, KILL_CFG, seed=5, shard_size=2, resume=True, progress=False)
    assert s.skipped_shards >= 1
    assert shard_tree(out) == straight
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------------------- per-sample checks


def _flip_black_level(tar: Path) -> str:
    """Change ``"black_level": 256`` into 257 inside the first sample's meta.json, in place (same size)."""
    from rawsynth.shards import iter_shard

    data = bytearray(tar.read_bytes())
    first = next(iter(iter_shard(tar)))
    meta = first["meta.json"]
    i = data.find(meta)
    j = meta.find(b'"black_level": ')
    assert i > 0 and j > 0
    pos = i + j + len(b'"black_level": ')
    digits = meta[j + len(b'"black_level": '):].split(b",")[0].split(b"}")[0]
    last = pos + len(digits) - 1
    data[last] = data[last] ^ 0x01  # 256 -> 257 (or any value: its last digit changes)
    tar.write_bytes(bytes(data))
    return first["__key__"]


def test_a_flipped_meta_byte_is_flagged_by_the_reader(src, tmp_path):
    from rawsynth.data import make_dataset

    out = tmp_path / "out"
    generate(collect_sources([src]), out, SynthConfig(crop=64, mode="ddnet"), shard_size=3, progress=False)
    tar = out / "shard-000000.tar"
    key = _flip_black_level(tar)
    with pytest.raises(InputError, match=f"{key}.*checksum mismatch.*meta.json"):
        list(make_dataset(str(tar), flips=False))
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        keys = [s["key"] for s in make_dataset(str(tar), flips=False, handler="warn")]
    assert keys == ["0000001_0000", "0000002_0000"] and key == "0000000_0000"
    assert len(list(make_dataset(str(tar), flips=False, verify=False))) == 3  # the check is what catches it


def test_member_checksums_match_gnu_tar_and_sha256sum(src, tmp_path):
    """The recorded member checksums, checked with tools we did not write: GNU tar extracts, coreutils hashes."""
    import shutil

    if not (shutil.which("tar") and shutil.which("sha256sum")):
        pytest.skip("needs GNU tar and coreutils sha256sum")
    out = tmp_path / "out"
    generate(collect_sources([src]), out, SynthConfig(crop=64, save_srgb=True), shard_size=3, progress=False)
    stats = json.loads((out / "shard-000000.stats.json").read_text())
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["tar", "-xf", str(out / "shard-000000.tar"), "-C", str(x)], check=True)
    names = sorted(p.name for p in x.iterdir())
    lines = subprocess.run(["sha256sum", *names], cwd=x, check=True, capture_output=True, text=True).stdout
    theirs = {}
    for line in lines.splitlines():
        digest, name = line.split(maxsplit=1)
        key, _, field = name.partition(".")
        theirs.setdefault(key, {})[field] = digest
    assert theirs == stats["member_sha256"] and len(theirs) == 3
    whole = subprocess.run(["sha256sum", str(out / "shard-000000.tar")], check=True, capture_output=True, text=True)
    assert whole.stdout.split()[0] == stats["sha256"]  # what --resume compares a finished shard with
    assert {f for fields in theirs.values() for f in fields} == {"raw.npy", "hq.npy", "meta.json", "lq.png", "gt.png"}
