"""Weight files are read as plain tensors before pyiqa sees them, and pyiqa's own ``torch.load(...,
weights_only=False)`` calls are forced to ``weights_only=True``; ``weights`` prints where missing files come from."""

from __future__ import annotations

import pathlib

import pytest
import torch

from benchmarks.cli import main
from benchmarks.errors import UnsafeWeightsError
from benchmarks.scoring.weights import check_loadable, offline_hub, require_weights, required_weights


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: stands for code a crafted ``.pth`` would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _lpips_files(root, marker):
    a, b = (root / w.relpath for w in required_weights(["lpips"]))
    a.parent.mkdir(parents=True, exist_ok=True)
    b.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.zeros(2, 3)}, a)
    torch.save({"lin0.model.1.weight": torch.zeros(1), "evil": _Payload(marker)}, b)
    return a, b


def test_crafted_pickle_is_refused_before_pyiqa(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    plain, crafted = _lpips_files(tmp_path / "w", marker)
    check_loadable(plain)  # plain tensors pass
    with pytest.raises(UnsafeWeightsError) as e:
        require_weights(["lpips"], tmp_path / "w")
    assert str(crafted) in str(e.value) and "weights_only=True" in str(e.value) and not marker.exists()
    # through the CLI: one error line naming the file, nothing scored, no code run
    import numpy as np

    from .conftest import write_rgb

    write_rgb(tmp_path / "gt" / "a.png", np.zeros((64, 64, 3), np.uint8))
    write_rgb(tmp_path / "pred" / "a.png", np.ones((64, 64, 3), np.uint8))
    rc = main(["score", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--metrics", "lpips",
               "--weights-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{crafted}: refused: not a plain weights file" in err and not marker.exists()


def test_offline_hub_forces_weights_only(tmp_path):
    marker = tmp_path / "code-ran"
    _, crafted = _lpips_files(tmp_path / "w", marker)
    with offline_hub(tmp_path / "w"), pytest.raises(Exception):  # noqa: B017 - torch's UnpicklingError
        torch.load(crafted, weights_only=False)  # what pyiqa's load_pretrained_network asks for
    assert not marker.exists()
    assert torch.load.__name__ == "load"  # restored


def test_torchscript_and_mat_files_pass(tmp_path):
    ts = tmp_path / "RN50.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(ts))
    check_loadable(ts)
    (tmp_path / "x.mat").write_bytes(b"MATLAB 5.0")
    check_loadable(tmp_path / "x.mat")


def test_weights_command_prints_the_url_of_each_missing_file(tmp_path, capsys):
    assert main(["weights", "--metrics", "lpips,niqe", "--weights-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for w in required_weights(["lpips", "niqe"]):
        assert f"download: {w.url}" in out
    assert out.count("MISSING") == 3
