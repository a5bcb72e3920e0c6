"""`rawsynth generate`: plan purity, shard files, resume after SIGKILL, worker-count independence, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rawsynth.cli import main
from rawsynth.errors import ConfigError
from rawsynth.generate import generate, plan_shards
from rawsynth.inspect import inspect_dataset
from rawsynth.pipeline import SynthConfig
from rawsynth.sources import Source, collect_sources

from .conftest import kill_after_shards, photo_sources, shard_tree

CFG = SynthConfig(crop=64, crops_per_image=3, save_srgb=True)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return photo_sources(tmp_path_factory.mktemp("src"))


def test_plan_is_a_pure_function():
    srcs = [Source(f"img{i}.png", f"/x/img{i}.png") for i in range(5)]
    plan = plan_shards(srcs, 3, 4)
    assert [len(t.refs) for t in plan] == [4, 4, 4, 3]
    assert [r.key for r in plan[1].refs] == ["0000001_0001", "0000001_0002", "0000002_0000", "0000002_0001"]
    assert plan[1].refs[2].source == srcs[2] and plan[1].name == "shard-000001"
    assert plan_shards(srcs, 3, 4) == plan
    assert sum(len(t.refs) for t in plan_shards(srcs, 3, 4, num_samples=7)) == 7
    with pytest.raises(ConfigError, match="exceeds"):
        plan_shards(srcs, 3, 4, num_samples=16)


def test_generate_writes_shards_stats_manifest(src, tmp_path):
    s = generate(collect_sources([src]), tmp_path / "out", CFG, seed=1, shard_size=4, progress=False)
    out = tmp_path / "out"
    assert (s.samples, s.failures, s.shards) == (9, 0, 3)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", *[f"shard-{i:06d}.{ext}" for i in range(3) for ext in ("stats.json", "tar")]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["seed"] == 1 and manifest["num_samples"] == 9
    assert [e["count"] for e in manifest["shards"]] == [4, 4, 1]
    report = inspect_dataset(out)
    assert report.ok and report.samples == 9 and sum(report.patterns.values()) == 9 and report.jpeg


def test_worker_count_does_not_change_a_byte(src, tmp_path):
    generate(collect_sources([src]), tmp_path / "a", CFG, seed=2, shard_size=2, workers=1, progress=False)
    generate(collect_sources([src]), tmp_path / "b", CFG, seed=2, shard_size=2, workers=2, progress=False)
    assert shard_tree(tmp_path / "a") == shard_tree(tmp_path / "b")


def test_sigkill_then_resume_gives_the_uninterrupted_result(src, tmp_path):
    args = [sys.executable, "-m", "rawsynth", "generate", str(src), "--crop", "128", "--crops-per-image", "12",
            "--shard-size", "1", "--workers", "1", "--seed", "9", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_shards(proc, killed, 3)
    assert len(list(killed.glob("*.stats.json"))) < 36  # really interrupted
    assert subprocess.run(args + ["--out", str(killed)], capture_output=True).returncode == 2  # needs --resume
    subprocess.run(args + ["--out", str(killed), "--resume"], check=True, capture_output=True)
    straight = tmp_path / "straight"
    subprocess.run(args + ["--out", str(straight)], check=True, capture_output=True)
    assert shard_tree(killed) == shard_tree(straight)
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))


def test_bad_inputs_become_failure_rows_and_the_run_goes_on(src, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (bad / name).write_bytes((src / name).read_bytes())
    (bad / "empty.png").write_bytes(b"")
    (bad / "cut.png").write_bytes((src / "coffee.png").read_bytes()[:500])
    (bad / "notes.jpg").write_text("not an image")
    cv2.imwrite(str(bad / "tiny.png"), np.zeros((20, 20, 3), np.uint8))
    cfg = SynthConfig(crop=64, crops_per_image=1)
    s = generate(collect_sources([bad]), tmp_path / "out", cfg, shard_size=3, progress=False)
    assert (s.samples, s.failures) == (2, 4)
    reasons = {}
    for p in (tmp_path / "out").glob("*.stats.json"):
        for f in json.loads(p.read_text())["failures"]:
            reasons[Path(f["source"]).name] = f["reason"]
    assert reasons == {"empty.png": "empty file", "cut.png": "truncated", "notes.jpg": "not an image",
                       "tiny.png": "too small"}


def test_existing_dataset_conflicts_resume_and_overwrite(src, tmp_path):
    out = tmp_path / "out"
    srcs = collect_sources([src])
    generate(srcs, out, CFG, seed=1, shard_size=4, progress=False)
    with pytest.raises(ConfigError, match="already holds"):
        generate(srcs, out, CFG, seed=1, shard_size=4, progress=False)
    with pytest.raises(ConfigError, match="different dataset"):
        generate(srcs, out, CFG, seed=2, shard_size=4, resume=True, progress=False)
    s = generate(srcs, out, CFG, seed=1, shard_size=4, resume=True, progress=False)
    assert s.skipped_shards == 3 and s.samples == 0
    s = generate(srcs, out, CFG, seed=2, shard_size=4, overwrite=True, progress=False)
    assert s.samples == 9 and json.loads((out / "manifest.json").read_text())["seed"] == 2


def test_unusable_out_dirs(src, tmp_path):
    srcs = collect_sources([src])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        generate(srcs, tmp_path / "file", CFG, progress=False)
    with pytest.raises(ConfigError, match="cannot be created"):  # missing parents are created, not a file's
        generate(srcs, tmp_path / "file" / "out", CFG, progress=False)


def test_full_disk_leaves_no_half_shard(src, tmp_path, monkeypatch, capsys):
    import errno

    import rawsynth.shards.tar as tar

    real = tar.write_shard
    calls = []

    def failing(path, samples):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, samples)

    monkeypatch.setattr("rawsynth.shards.write_shard", failing)
    out = tmp_path / "out"
    rc = main(["generate", str(src), "--out", str(out), "--crop", "64", "--crops-per-image", "3",
               "--shard-size", "4", "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left" in err and "--resume" in err
    assert sorted(p.name for p in out.glob("shard-*.tar")) == ["shard-000000.tar"]
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr("rawsynth.shards.write_shard", real)
    assert main(["generate", str(src), "--out", str(out), "--crop", "64", "--crops-per-image", "3",
                 "--shard-size", "4", "--workers", "1", "--no-progress", "--resume"]) == 0
    assert inspect_dataset(out).ok


def test_cli_config_file_and_overrides(src, tmp_path, capsys):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("mode: ddnet\ncrop: 32\ncrops_per_image: 2\nseed: 4\nshard_size: 3\nworkers: 1\n"
                       "patterns: [RGGB]\n")
    out = tmp_path / "out"
    assert main(["generate", str(src), "--out", str(out), "--config", str(cfgfile), "--crop", "48",
                 "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["crop"] == 48 and manifest["config"]["mode"] == "ddnet" and manifest["seed"] == 4
    assert manifest["shard_size"] == 3 and manifest["num_samples"] == 6
    assert "6 samples" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    assert "RGGB" in capsys.readouterr().out
    assert main(["preview", str(out), "--out", str(tmp_path / "p.png"), "-n", "3", "--size", "64"]) == 0
    assert cv2.imread(str(tmp_path / "p.png")).shape == (3 * 64, 4 * 64, 3)
    cfgfile.write_text("crops: 2\n")
    assert main(["generate", str(src), "--out", str(tmp_path / "x"), "--config", str(cfgfile)]) == 2
    assert "unknown key(s) ['crops']" in capsys.readouterr().err


def test_inspect_catches_tampering(src, tmp_path, capsys):
    out = tmp_path / "out"
    generate(collect_sources([src]), out, CFG, seed=1, shard_size=4, progress=False)
    data = bytearray((out / "shard-000001.tar").read_bytes())
    data[700] ^= 0xFF
    (out / "shard-000001.tar").write_bytes(bytes(data))
    (out / "shard-000002.tar").unlink()
    assert main(["inspect", str(out)]) == 1
    text = capsys.readouterr().out
    assert "shard-000001.tar: sha256" in text and "shard-000002.tar: missing" in text
