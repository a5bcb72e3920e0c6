"""Every metric that needs weights, through pyiqa's real loading path, with random weight files the test writes
under the expected names (:mod:`.fake_weights`). Only shapes and documented ranges are asserted: random
weights give no meaningful score."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.scoring.weights import ENV_VAR, check_weights

from .fake_weights import make_fake_weights

NEEDS_WEIGHTS = ("lpips", "dists", "fid", "niqe", "musiq", "clipiqa")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return make_fake_weights(tmp_path_factory.mktemp("weights"))


def test_precheck_sees_every_file_and_verification_flags_non_published_ones(weights_dir, capsys):
    report = check_weights(NEEDS_WEIGHTS, weights_dir, verify=True)
    assert report.ok and not report.notes and len(report.files) == 8
    by_name = {s.file.name: s.verified for s in report.files}
    # torchvision's and CLIP's published SHA-256 are known: random files are flagged; pyiqa's own have none
    assert by_name["vgg16-397923af.pth"] is False and by_name["RN50.pt"] is False
    assert by_name["DISTS_weights-f5e65c96.pth"] is None
    assert main(["weights", "--weights-dir", str(weights_dir)]) == 0
    out = capsys.readouterr().out
    assert "MISSING" not in out and out.count("present") == 8


def test_all_metrics_load_and_score_offline(bench_copy, isp_dir, weights_dir, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(weights_dir))
    # FID: Inception weights and features are the real path; pyiqa's Frechet distance of the 2048-d statistics
    # (a 2048x2048 scipy sqrtm, ~25 s on 2 CPU cores) runs here on their leading 64x64 block.
    import pyiqa.archs.fid_arch as fid_arch

    real_fd, seen = fid_arch.frechet_distance, {}

    def leading_block(mu1, s1, mu2, s2, *args, **kwargs):
        seen["shapes"] = (mu1.shape, s1.shape, mu2.shape, s2.shape)
        seen["finite"] = all(np.isfinite(a).all() for a in (mu1, s1, mu2, s2))
        return real_fd(mu1[:64], s1[:64, :64], mu2[:64], s2[:64, :64], *args, **kwargs)

    monkeypatch.setattr(fid_arch, "frechet_distance", leading_block)
    rc = main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--method", "ISP (bilinear)",
               "--device", "cpu", "--batch-size", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((bench_copy / "results" / "ISP (bilinear)" / "summary.json").read_text())
    m = summary["metrics"]
    assert set(m) == {"psnr", "ssim", "lpips", "dists", "fid", "niqe", "musiq", "clipiqa"}
    with open(bench_copy / "results" / "ISP (bilinear)" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == ["0801", "0802", "0803", "0804"]  # one score per image and metric
    per = {k: [float(r[k]) for r in rows] for k in ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "clipiqa")}
    assert all(math.isfinite(v) for vs in per.values() for v in vs)
    assert all(0 < v < 100 for v in per["psnr"]) and all(0 <= v <= 1 for v in per["ssim"])
    assert all(v >= 0 for v in per["lpips"]) and all(0 <= v <= 1 for v in per["dists"])
    assert all(v >= 0 for v in per["niqe"]) and all(0 <= v <= 1 for v in per["clipiqa"])
    assert math.isfinite(m["fid"]["value"]) and m["fid"]["value"] > -1e-3 and m["fid"]["n"] == 4
    assert seen == {"shapes": ((2048,), (2048, 2048), (2048,), (2048, 2048)), "finite": True}
    for name, s in m.items():
        assert s["n"] == 4 and s["nonfinite"] == 0, name
    assert summary["weights"]["dir"] == str(weights_dir) and len(summary["weights"]["files"]) == 8
    assert m["lpips"]["settings"]["options"] == {"type": "LPIPS", "net": "alex", "version": "0.1"}
