"""The ``python -m benchmarks`` entry point and the import boundaries (no eager pyiqa / rddm, rawsynth alone)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.scoring import weights as W


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_module_entry_point_and_lazy_imports():
    # `python -m benchmarks --help` through runpy, then: nothing heavy or optional was imported on the way
    res = _py("import runpy, sys; sys.argv = ['benchmarks', '--help']\n"
              "try:\n    runpy.run_module('benchmarks', run_name='__main__')\nexcept SystemExit as e:\n"
              "    assert e.code == 0, e.code\n"
              "import benchmarks.isp, benchmarks.run, benchmarks.report.html, benchmarks.scoring.score\n"
              "import benchmarks.dnd\n"
              "bad = sorted({m.split('.')[0] for m in sys.modules} & {'pyiqa', 'rddm', 'diffusers', 'h5py', 'clip'})\n"
              "assert not bad, bad")
    assert res.returncode == 0, res.stderr
    assert "build" in res.stdout and "weights" in res.stdout
    res = _py("import sys, rawsynth, rawsynth.cli, rawsynth.generate; "
              "assert not [m for m in sys.modules if m.split('.')[0] == 'benchmarks']")
    assert res.returncode == 0, res.stderr


def test_download_fetches_only_the_missing_files_with_their_hashes(tmp_path, monkeypatch):
    import torch.hub

    (tmp_path / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "hub" / "pyiqa" / "niqe_modelparameters.mat").write_bytes(b"present")
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        open(dst, "wb").close()

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    report = W.download_weights(["niqe", "lpips", "clipiqa"], tmp_path, progress=False)
    assert report.ok
    assert [(c[0].rsplit("/", 1)[-1], c[1], c[2]) for c in calls] == [
        ("alexnet-owt-7be5be79.pth", str(tmp_path / "hub/checkpoints/alexnet-owt-7be5be79.pth"), "7be5be79"),
        ("LPIPS_v0.1_alex-df73285e.pth", str(tmp_path / "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"), None),
        ("RN50.pt", str(tmp_path / "hub/clip/RN50.pt"),
         "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    ]
