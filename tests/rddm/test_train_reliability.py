"""Attacks on training (issue 13): every sample bad, a full disk while saving a checkpoint, a kill while a
step is saved again, a flipped byte inside a sample. Each reproduces a failure of the code before the fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rddm.cli import main

from .conftest import ROOT, tiny_train_config, write_yaml


def _err(capsys) -> str:
    return capsys.readouterr().err


def _copy_shards(shards: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in shards.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def _spoil_every_meta(folder: Path, how: str) -> None:
    """In place, same size: ``"json"``: every meta.json stops being JSON; ``"bit"``: one digit of each changes
    (still valid JSON, so only the member checksums can tell); ``"tar"``: every shard is garbage."""
    from rawsynth.shards import iter_shard

    for tar in sorted(folder.glob("shard-*.tar")):
        data = bytearray(tar.read_bytes())
        if how == "tar":
            tar.write_bytes(bytes(range(256)) * (len(data) // 256))
            continue
        for sample in list(iter_shard(tar)):
            meta = sample["meta.json"]
            i = data.find(meta)
            if how == "json":
                data[i] = ord("X")
            else:
                j = meta.find(b'"black_level": ') + len(b'"black_level": ')
                data[i + j] ^= 0x01
        tar.write_bytes(bytes(data))


def _base(tmp_path: Path, shards: Path, **over) -> list[str]:
    cfg = write_yaml(tmp_path / "c.yaml", dict(tiny_train_config("ddnet"), tensorboard=False, **over))
    return ["train-ddnet", "--config", str(cfg), "--shards", str(shards), "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("how", ["tar", "json", "bit"])
def test_training_on_all_bad_samples_is_a_one_line_error(shards, tmp_path, capsys, how):
    bad = _copy_shards(shards, tmp_path / "bad")
    _spoil_every_meta(bad, how)
    with pytest.warns(RuntimeWarning, match={"tar": "skipping bad data", "json": "meta.json",
                                             "bit": "checksum mismatch"}[how]):
        assert main([*_base(tmp_path, bad), "--out", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert "no full batch of 2 samples" in err and "Traceback" not in err and "No samples found" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_flipped_meta_byte_is_caught_in_training_unless_verify_is_off(shards, tmp_path, capsys):
    bad = _copy_shards(shards, tmp_path / "bad")
    _spoil_every_meta(bad, "bit")
    cfg = tiny_train_config("ddnet", tensorboard=False, max_steps=1, save_every=1)
    cfg["data"] = dict(cfg["data"], verify=False, handler="raise")
    base = ["train-ddnet", "--config", str(write_yaml(tmp_path / "c.yaml", cfg)), "--shards", str(bad),
            "--device", "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "off")]) == 0  # without the check the change goes unseen
    cfg["data"]["verify"] = True
    base[2] = str(write_yaml(tmp_path / "c2.yaml", cfg))
    assert main([*base, "--out", str(tmp_path / "on")]) == 2
    assert "checksum mismatch" in _err(capsys)


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> tuple[list[str], Path]:
    """A finished tiny DDNet run (4 steps, checkpoints at 2 and 4) and the arguments that made it."""
    d = tmp_path_factory.mktemp("trained")
    base = _base(d, shards, max_steps=4, save_every=2)
    assert main([*base, "--out", str(d / "o")]) == 0
    return base, d / "o"


def _safetensor_error(*a, **k):
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                          "\"No space left on device\" })")


def _torch_error(*a, **k):
    raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4544 vs 4436")


def _oserror(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where,fail", [("safetensors.torch.save_file", _safetensor_error),
                                        ("torch.save", _torch_error), ("torch.save", _oserror)],
                         ids=["safetensors", "torch-inline-container", "oserror"])
def test_a_full_disk_while_saving_a_checkpoint_is_one_typed_error(trained, tmp_path, capsys, monkeypatch, where,
                                                                   fail):
    import importlib

    base, done = trained
    out = tmp_path / "o"
    shutil.copytree(done, out)
    capsys.readouterr()
    shutil.rmtree(out / "checkpoints" / "step-000004")
    mod, name = where.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(mod), name, fail)
    assert main([*base, "--out", str(out), "--resume"]) == 2
    err = _err(capsys)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{out / 'checkpoints'}: cannot write checkpoint step-000004" in err, err
    assert "needs about" in err and "GiB free there" in err and "--resume" in err, err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]  # no step-000004.tmp


_KILLER = textwrap.dedent("""
    import os, shutil, sys
    from pathlib import Path

    mode, target = sys.argv[1], sys.argv[2]
    real_rmtree, real_replace = shutil.rmtree, os.replace

    def rmtree(path, *a, **k):  # die half-way through deleting the checkpoint being replaced
        p = Path(path)
        if mode == "rmtree" and p.name.startswith(target) and not p.name.endswith(".tmp"):
            for f in sorted(p.rglob("*.safetensors")):
                f.unlink()
                os._exit(9)
        return real_rmtree(path, *a, **k)

    def replace(src, dst, *a, **k):  # die just before the new copy is published
        if mode == "replace" and Path(src).name == target + ".tmp":
            os._exit(9)
        return real_replace(src, dst, *a, **k)

    shutil.rmtree, os.replace = rmtree, replace
    from rddm.cli import main
    sys.exit(main(sys.argv[3:]))
""")


@pytest.mark.parametrize("mode", ["rmtree", "replace"])
def test_a_kill_while_a_step_is_saved_again_keeps_a_complete_copy(trained, tmp_path, capsys, mode):
    base, done = trained
    out = tmp_path / "o"
    shutil.copytree(done, out)
    first = (out / "checkpoints" / "step-000004" / "ddnet" / "diffusion_pytorch_model.safetensors").read_bytes()
    (tmp_path / "killer.py").write_text(_KILLER)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(tmp_path / "killer.py"), mode, "step-000004", *base, "--out", str(out),
                        "--resume", str(out / "checkpoints" / "step-000002")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 9, r.stderr  # killed while saving step 4 again
    capsys.readouterr()
    # resuming the latest checkpoint works, from step 4 (nothing left to train), as saved (training is deterministic)
    logged = (out / "metrics.jsonl").read_text()
    assert main([*base, "--out", str(out), "--resume"]) == 0, _err(capsys)
    assert (out / "metrics.jsonl").read_text() == logged
    ckpt = out / "checkpoints" / "step-000004"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 4
    assert (ckpt / "ddnet" / "diffusion_pytorch_model.safetensors").read_bytes() == first
    assert not list((out / "checkpoints").glob("*.old")) and not list((out / "checkpoints").glob("*.tmp"))
    torch.load(ckpt / "training_state.pt", weights_only=True)


def test_a_full_disk_while_saving_the_final_models_is_one_typed_error(trained, tmp_path, capsys, monkeypatch):
    import safetensors.torch

    base, done = trained
    out = tmp_path / "o"
    shutil.copytree(done, out)
    shutil.rmtree(out / "checkpoints" / "step-000004")
    real = safetensors.torch.save_file

    def save_file(tensors, filename, *a, **k):  # the checkpoint fits, the final copy does not
        if "checkpoints" in str(filename):
            return real(tensors, filename, *a, **k)
        _safetensor_error()

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    capsys.readouterr()
    assert main([*base, "--out", str(out), "--resume"]) == 2
    err = _err(capsys)
    assert f"{out}: cannot write the final models (SafetensorError" in err and "GiB free there" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert (out / "checkpoints" / "step-000004" / "trainer_state.json").is_file()  # the run can be resumed
