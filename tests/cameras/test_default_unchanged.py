"""With no camera options, `rawsynth generate --format-version 1` writes the same bytes as before the camera work
(issue 18; the default format became version 2 with issue 19, pinned in tests/test_golden.py).

The digests below were computed on the base commit (a0af4dd, before any camera code existed) by this very
test. Every tar member counts byte for byte, except that ``meta.json`` is compared without its ``version``
field (a release bump must not fail this test) and with only the file name of its source path (the
temporary folder differs between runs). The sources are PNGs written with stored (level 0) zlib
blocks by a hand-written encoder, so their bytes (whose SHA-256 the metadata records) do not depend on an
image library's version.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from rawsynth.cli import main
from rawsynth.io.raw import read_raw
from rawsynth.shards import decode_sample, iter_shard

# digest of every shard (members, sorted) of the two runs below, on the base commit
GOLDEN = {
    "plain": "025d75759df91d6dd95da480f930ddb98fa82f102a9ede66c455ae96f99d3abc",
    # without the .dng members: issue 14 changed the DNG colour tags on purpose (ColorMatrix1 maps D65 to
    # AsShotNeutral, DefaultCrop, ISO in the EXIF IFD); the mosaic they hold is checked against raw.png below
    "dng_srgb": "cf3809096d27f7f9af972f7b869727b405613339bceb0079a7d1e38aa94948d3",
}


def _png_stored(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG with stored (uncompressed) deflate blocks: the same bytes with any zlib."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if m.name.endswith(".dng"):
                    continue
                data = tar.extractfile(m).read()
                if m.name.endswith(".meta.json"):
                    meta = json.loads(data)
                    meta.pop("version", None)
                    meta["source"]["path"] = Path(meta["source"]["path"]).name  # the tmp folder varies
                    data = json.dumps(meta, sort_keys=True).encode()
                h.update(m.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src")
    for name in ("astronaut", "coffee"):
        (d / f"{name}.png").write_bytes(_png_stored(np.ascontiguousarray(getattr(skimage.data, name)()[:96, :128])))
    return d


@pytest.mark.parametrize("run,flags", [("plain", []), ("dng_srgb", ["--save-dng", "--save-srgb", "--mode", "ddnet"])])
def test_default_generate_bytes_unchanged(src, tmp_path, run, flags):
    out = tmp_path / run
    assert main(["generate", str(src), "--out", str(out), "--crop", "64", "--crops-per-image", "2", "--seed", "7",
                 "--shard-size", "3", "--workers", "1", "--no-progress", "--format-version", "1", *flags]) == 0
    digest = _digest(out)
    print(run, digest)
    assert digest == GOLDEN[run]
    if "--save-dng" in flags:  # each DNG holds exactly the sample's mosaic and pattern
        n = 0
        for shard in sorted(out.glob("shard-*.tar")):
            for sample in iter_shard(shard):
                d = decode_sample(sample)
                path = tmp_path / f"{d['key']}.dng"
                path.write_bytes(d["dng"])
                img = read_raw(path)
                assert np.array_equal(img.mosaic, d["raw_dn"]) and img.pattern == d["meta"]["pattern"]
                n += 1
        assert n == 4
