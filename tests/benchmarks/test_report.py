"""The static HTML report, loaded in a real headless Chromium: no console errors, every image decodes, and the
screenshot shows the leaderboard table and the comparison crops."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.bench import Bench
from benchmarks.cli import main

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0"]

# Injected at the top of a copy of the report: records errors, then on load writes a JSON probe into the page
# (appended after all content, so nothing above it moves).
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
const _ce = console.error; console.error = (...a) => { window.__errors.push(a.join(" ")); _ce(...a); };
window.addEventListener("load", () => {
  const r = el => { const b = el.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };
  const imgs = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                               natural: [i.naturalWidth, i.naturalHeight], rect: r(i)}));
  const p = document.createElement("pre"); p.id = "probe";
  p.textContent = JSON.stringify({errors: window.__errors, table: r(document.querySelector("table.lb")),
                                  height: document.documentElement.scrollHeight, images: imgs});
  document.body.appendChild(p);
});
</script>"""


def _chromium(args: list[str], profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def bench_copy(div2k_bench, tmp_path_factory):
    return Path(shutil.copytree(div2k_bench, tmp_path_factory.mktemp("report") / "bench"))


@pytest.fixture(scope="module")
def report(bench_copy, isp_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report-html")
    fast = ["--metrics", "psnr,ssim", "--device", "cpu", "--no-progress"]
    assert main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--method", "ISP (bilinear)",
                 *fast]) == 0
    assert main(["score", "--bench", str(bench_copy), "--pred", str(bench_copy / "lq_srgb"), "--method", "LQ sRGB",
                 *fast]) == 0
    out = tmp_path / "report.html"
    assert main(["report", "--bench", str(bench_copy), "--out", str(out), "--crops", "2", "--crop-size", "96"]) == 0
    return out


def test_report_is_self_contained(report):
    doc = report.read_text()
    assert doc.startswith("<!DOCTYPE html>") and "<script" not in doc and "<link" not in doc
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", doc)
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', doc)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "ISP (bilinear)" in doc and "published, Table 1" in doc and "Fidelity vs perception" in doc
    assert "Per-image comparisons" in doc and "Two-stage input" in doc


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make test` installs Debian's chromium)")
def test_report_in_headless_chromium(report, bench_copy, tmp_path):
    probe_html = tmp_path / "probe.html"
    probe_html.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = _chromium(["--window-size=1400,1000", "--dump-dom", probe_html.as_uri()], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, "the probe did not run (page did not load)"
    probe = json.loads(html.unescape(m.group(1)))
    assert probe["errors"] == [] and _console_lines(dom.stderr) == []
    assert len(probe["images"]) == 2 + 2 * 4  # bar charts, scatter; 2 images x (GT, input, 2 methods)
    assert all(i["ok"] for i in probe["images"]), [i for i in probe["images"] if not i["ok"]]

    # the screenshot, tall enough to show the first comparison row
    crops = [i for i in probe["images"] if i["alt"].startswith("GT")]
    first = crops[0]["rect"]
    height = int(first[1] + first[3] + 40)
    shot = tmp_path / "shot.png"
    res = _chromium([f"--window-size=1400,{height}", f"--screenshot={shot}", report.as_uri()], tmp_path / "p2")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert _console_lines(res.stderr) == []
    img = cv2.imread(str(shot))[..., ::-1]
    assert img.shape[:2] == (height, 1400)

    def region(rect, inset=0):  # inset: skip the image's 1-px CSS border
        x, y, w, h = (int(round(v)) for v in rect)
        return img[y + inset:y + h - inset, x + inset:x + w - inset].astype(np.float64)

    table = region(probe["table"])
    assert table.shape[0] > 100 and table.std() > 20  # text and grid lines, not a blank area
    # the first GT crop appears as rendered: the screenshot there equals the centre crop of gt_srgb, shown x2
    b = Bench.load(bench_copy)
    gt = b.gt_srgb(b.keys[0])
    c = gt[16:112, 16:112]  # centre 96x96 of 128x128
    expected = cv2.resize(c, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST).astype(np.float64)
    shown = region(first, inset=1)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).mean() < 3.0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make test` installs Debian's chromium)")
def test_the_console_check_sees_errors(tmp_path):
    """The harness itself: a page with a script error is caught both by the probe and in Chromium's log."""
    page = tmp_path / "bad.html"
    page.write_text(f"<!DOCTYPE html><html><head>{PROBE}</head><body><table class='lb'></table>"
                    "<script>console.error('boom'); undefinedCall();</script></body></html>")
    res = _chromium(["--dump-dom", page.as_uri()], tmp_path / "p")
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S).group(1)))
    assert probe["errors"][0] == "boom" and "undefinedCall" in probe["errors"][1]
    assert len(_console_lines(res.stderr)) == 2
