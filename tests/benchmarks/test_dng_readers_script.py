"""The manual DNG-readers check (``python -m benchmarks.perf.dng_readers``) runs, here with LibRaw only (darktable
and RawTherapee, when installed, take seconds per file; their figures are in docs/io.md)."""

import json

from benchmarks.perf import dng_readers


def test_libraw_column_of_the_sheet(tmp_path, capsys):
    out = tmp_path / "check"
    assert dng_readers.main(["--out", str(out), "--photos", "1", "--size", "96", "--readers", "LibRaw"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["columns"] == ["ours", "LibRaw"] and len(res["files"]) == 8 and len(list(out.glob("*.dng"))) == 8
    s = res["summary"]["LibRaw"]
    assert s["min"] > 40.0 and s["max_cast"] < 0.01  # LibRaw develops our DNGs like process() does
    assert abs(s["median_gain_over_rgb_gain"] - 1.0) < 0.01  # LibRaw ignores BaselineExposure: gain = rgb_gain
    assert (out / "sheet.png").stat().st_size > 0
    assert "| LibRaw |" in capsys.readouterr().out
