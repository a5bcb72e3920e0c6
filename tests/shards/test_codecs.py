"""Both member codecs of ``rawsynth generate --members`` (npy: default, png: 16-bit PNG) end to end: the manifest
records the codec, ``rawsynth inspect`` verifies both, and the training reader (with its member checksums) yields
the same arrays from both: the codec changes the bytes on disk, never the pairs."""

from __future__ import annotations

import json
import tarfile

import numpy as np

from rawsynth.cli import main
from rawsynth.data import make_dataset
from rawsynth.sources import bundled_sources


def _samples(out):
    ds = make_dataset(str(out / "shard-000000.tar"), crop=None, flips=False, verify=True)
    return {s["key"]: s for s in ds}


def test_npy_and_png_members_give_the_same_pairs_through_inspect_and_the_reader(tmp_path, capsys):
    src = bundled_sources()[0].path
    runs = {}
    for codec in ("npy", "png"):
        out = tmp_path / codec
        assert main(["generate", src, "--out", str(out), "--crop", "64", "--crops-per-image", "3", "--shard-size",
                     "8", "--seed", "2", "--members", codec, "--no-progress"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["config"]["members"] == codec
        assert main(["inspect", str(out)]) == 0
        runs[codec] = _samples(out)
    capsys.readouterr()
    npy, png = runs["npy"], runs["png"]
    assert sorted(npy) == sorted(png) and len(npy) == 3
    for k in npy:
        a, b = npy[k], png[k]
        for field in ("raw", "hq"):
            x, y = np.asarray(a[field]), np.asarray(b[field])
            assert x.shape == y.shape and np.array_equal(x, y), (k, field)
        assert a["meta"] == b["meta"] and a["pattern"] == b["pattern"]
    for codec, fields in (("npy", {"raw.npy", "hq.npy", "meta.json"}), ("png", {"raw.png16", "hq.png16", "meta.json"})):
        with tarfile.open(tmp_path / codec / "shard-000000.tar") as tf:
            assert {m.name.split(".", 1)[1] for m in tf.getmembers()} == fields
