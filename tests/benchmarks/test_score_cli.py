"""Scoring end to end through the CLI (PSNR/SSIM: no weights needed), the leaderboard, the Markdown table and
``run`` for third-party commands."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.report.published import published_rows
from benchmarks.scoring.score import read_leaderboard
from benchmarks.bench import Bench

from .conftest import write_rgb

FAST = ["--metrics", "psnr,ssim", "--device", "cpu", "--no-progress"]


def test_score_writes_csv_summary_and_leaderboard(bench_copy, isp_dir, capsys):
    assert main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--method", "ISP (bilinear)",
                 *FAST]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ISP (bilinear) on DIV2K-Val (n=4): PSNR ") and "leaderboard" in out
    res = bench_copy / "results" / "ISP (bilinear)"
    with open(res / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == ["0801", "0802", "0803", "0804"] and rows[0]["file"] == "0801.png"
    s = json.loads((res / "summary.json").read_text())
    psnr = [float(r["psnr"]) for r in rows]
    assert s["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(psnr))
    assert s["metrics"]["psnr"]["std"] == pytest.approx(np.std(psnr)) and s["metrics"]["psnr"]["n"] == 4
    assert s["metrics"]["ssim"]["settings"]["pyiqa"] == "ssimc"
    assert s["n"] == 4 and s["bench"]["complete"] is False and s["weights"]["files"] == []
    assert {"rawsynth", "pyiqa", "torch"} <= set(s["versions"])
    lb = read_leaderboard(Bench.load(bench_copy))
    assert [e["method"] for e in lb["entries"]] == ["ISP (bilinear)"]
    assert lb["entries"][0]["summary"] == "results/ISP (bilinear)/summary.json"


def test_perfect_linear_prediction_scores_perfectly(bench_copy, capsys):
    # RDDM-style outputs: 16-bit linear camera RGB, developed with each image's own PTP, like gt_srgb
    assert main(["score", "--bench", str(bench_copy), "--pred", str(bench_copy / "gt_linear"), "--method", "oracle",
                 "--pred-space", "linear", *FAST]) == 0
    s = json.loads((bench_copy / "results" / "oracle" / "summary.json").read_text())
    assert s["metrics"]["ssim"]["mean"] == pytest.approx(1.0)
    assert s["metrics"]["psnr"]["mean"] >= 80  # identical images: pyiqa's PSNR caps at 10*log10(1/1e-8)


def test_rescoring_replaces_the_entry_and_table_marks_best(bench_copy, isp_dir, capsys):
    for method, pred in (("ISP", isp_dir), ("LQ sRGB", bench_copy / "lq_srgb"), ("ISP", isp_dir)):
        assert main(["score", "--bench", str(bench_copy), "--pred", str(pred), "--method", method,
                     "--metrics", "psnr", "--no-progress"]) == 0
    lb = read_leaderboard(Bench.load(bench_copy))
    assert [e["method"] for e in lb["entries"]] == ["LQ sRGB", "ISP"]
    capsys.readouterr()
    assert main(["table", "--bench", str(bench_copy)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("### DIV2K-Val (4 images, official download, INCOMPLETE build)")
    assert "| Method | Source | PSNR↑ | SSIM↑ | LPIPS↓ | DISTS↓ | FID↓ | NIQE↓ | MUSIQ↑ | CLIPIQA↑ | Convention |" in md
    assert "| ISP | ours, n=4 |" in md and "| RDDM (Ours-s1) | published, Table 1 | 23.7416 |" in md
    for col, best in ((2, max), (3, max), (4, min)):  # PSNR, SSIM (higher is better), LPIPS (lower): bold = best
        cells = [line.split(" | ")[col] for line in md.splitlines() if line.startswith("| ") and "Source" not in line
                 and "---" not in line]
        values = {c: float(c.strip("*_")) for c in cells if c != "–"}
        assert [c for c in cells if c.startswith("**")] == [f"**{best(values.values()):.4f}**"]
        assert len([c for c in cells if c.startswith("_")]) == 1  # one second best (no ties here)
    assert md.count("RDDM (Ours") == 1  # Table 8 repeats Table 1's RDDM row: shown once
    assert "unreleased test sets" in md
    assert main(["table", "--bench", str(bench_copy), "--no-published"]) == 0
    assert "published" not in capsys.readouterr().out


def test_pairing_errors_are_listed_together(bench_copy, isp_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(isp_dir, pred)
    (pred / "0801.png").rename(pred / "0801_out.png")  # tolerated suffix
    (pred / "0802.png").unlink()  # missing
    write_rgb(pred / "0803_x4.png", np.zeros((128, 128, 3), np.uint8))  # duplicate of 0803
    write_rgb(pred / "0804.png", np.zeros((64, 64, 3), np.uint8))  # wrong size
    write_rgb(pred / "0999.png", np.zeros((128, 128, 3), np.uint8))  # extra
    assert main(["score", "--bench", str(bench_copy), "--pred", str(pred), "--method", "m", *FAST]) == 2
    err = capsys.readouterr().err
    assert "1 missing (no file for key): 0802" in err and "1 extra (file matches no key): 0999.png" in err
    assert "duplicate for key 0803: 0803.png, 0803_x4.png" in err
    assert "wrong size: 0804.png: 64x64, expected 128x128" in err and "Traceback" not in err
    for name in ("0803_x4.png", "0804.png", "0999.png"):
        (pred / name).unlink()
    assert main(["score", "--bench", str(bench_copy), "--pred", str(pred), "--method", "m", *FAST]) == 2
    assert main(["score", "--bench", str(bench_copy), "--pred", str(pred), "--method", "m", "--allow-missing",
                 *FAST]) == 0
    out = capsys.readouterr().out
    assert "(n=2)" in out and "2 image(s) had no prediction" in out


def test_bad_options_are_clear_errors(bench_copy, isp_dir, capsys):
    base = ["score", "--bench", str(bench_copy), "--pred", str(isp_dir)]
    assert main([*base, "--method", "a/b", *FAST]) == 2
    assert "invalid --method 'a/b'" in capsys.readouterr().err
    assert main([*base, "--method", "m", "--metrics", "psnr,fidd"]) == 2
    assert "unknown metric(s) ['fidd']" in capsys.readouterr().err
    assert main(["score", "--bench", str(isp_dir), "--pred", str(isp_dir), "--method", "m"]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def _copy_cmd(src_ext="png"):
    code = ("import shutil,sys,pathlib; i,o=map(pathlib.Path,sys.argv[1:3]); o.mkdir(parents=True,exist_ok=True); "
            "[shutil.copy(p, o/(p.stem+'_out.png')) for p in sorted(i.glob('*.png'))]")
    return f'{sys.executable} -c "{code}" {{input}} {{output}}'


def test_run_a_command_over_two_stage_inputs(bench_copy, isp_dir, capsys):
    assert main(["run", "--bench", str(bench_copy), "--method", "copy-isp", "--input", "srgb", "--inputs",
                 str(isp_dir), "--cmd", _copy_cmd(), *FAST]) == 0
    out = capsys.readouterr().out
    assert "benchmarks run: copy-isp took" in out and "copy-isp on DIV2K-Val (n=4)" in out
    e = read_leaderboard(Bench.load(bench_copy))["entries"][0]
    assert e["run"]["input"] == "srgb" and e["run"]["seconds"] > 0 and e["run"]["per_image"] is False
    assert sorted(p.name for p in (bench_copy / "predictions" / "copy-isp").iterdir())[0] == "0801_out.png"


def test_run_per_image_on_raw_and_failures(bench_copy, capsys):
    # a crude "method" reading each 12-bit RAW PNG (and its metadata) and writing an 8-bit image, one process each
    code = ("import sys,json,cv2; i,o,m=sys.argv[1:4]; white=json.load(open(m))['sensor']['white_level']; "
            "raw=cv2.imread(i, cv2.IMREAD_UNCHANGED); "
            "cv2.imwrite(o, (cv2.cvtColor(raw, cv2.COLOR_BayerBG2BGR) * (255.0 / white)).astype('uint8'))")
    cmd = f'{sys.executable} -c "{code}" {{input}} {{output}} {{meta}}'
    assert main(["run", "--bench", str(bench_copy), "--method", "raw-isp", "--per-image", "--cmd", cmd, *FAST]) == 0
    e = read_leaderboard(Bench.load(bench_copy))["entries"][0]
    assert e["run"]["per_image"] is True and e["n"] == 4
    capsys.readouterr()
    assert main(["run", "--bench", str(bench_copy), "--method", "fails", "--cmd",
                 f"{sys.executable} -c 'import sys; sys.exit(3)' {{input}} {{output}}", *FAST]) == 2
    assert "failed with exit status 3" in capsys.readouterr().err
    assert main(["run", "--bench", str(bench_copy), "--method", "x", "--cmd", "true {output}", *FAST]) == 2
    assert "{input} and {output}" in capsys.readouterr().err


def test_published_rows_are_the_papers(tmp_path):
    """published.yaml holds exactly the paper's Table 1 and 8 rows (checked against the paper text when present)."""
    import pathlib
    import re

    rows = {(r.dataset, r.paper_name, r.table): r
            for d in ("div2k-val", "drealsr", "realsr") for r in published_rows(d)}
    assert len(rows) == 3 * (10 + 4)  # Table 8's "Ours" repeats Table 1's "Ours-s1"
    assert rows[("realsr", "Ours-s1", "Table 1")].metrics["fid"] == 36.8671
    paper = next((p / "shared" / "paper" / "RDDM.md" for p in pathlib.Path(__file__).resolve().parents
                  if (p / "shared" / "paper" / "RDDM.md").is_file()), None)
    if paper is None:
        pytest.skip("the paper text (shared/paper/RDDM.md) is not next to this checkout")
    text = paper.read_text()
    for (_, name, _), r in rows.items():
        nums = "\t".join(f"(?:<b>)?{v:.4f}(?:</b>)?" for v in r.metrics.values())
        assert re.search(rf"{re.escape(name)}\t{nums}", text), name
