"""Golden outputs of ``rawsynth generate``: the two runs named in issue 12 must give these shard bytes on the
pinned stack (``constraints.txt``), before and after any refactor. A change that moves a hash changes what the
library produces: it is a behaviour change and needs its own issue, not a refactor.

The hashes were recorded with the code of commit a0af4dd (before the architecture consolidation). They are the
sha256 of each shard tar, which holds every sample's RAW, linear HQ, sRGB crops and metadata.
"""

from __future__ import annotations

import hashlib

import pytest

from rawsynth.cli import main

GOLDEN = {
    "rddm": (["--crop", "256", "--crops-per-image", "2", "--shard-size", "4", "--save-srgb", "--seed", "0"], {
        "shard-000000.tar": "35987a0d86eec2d1da98435eed28b515fdf22c064ab1c2ca6eedc741be404f45",
        "shard-000001.tar": "caecdc7f162696b4e6ffc87e4c6a5669959ab7738c98dc36ebdfbb02c5c0fed8",
        "shard-000002.tar": "e2506aa87bf6cd4f636e147938412f4177417d4967908737c36b30adf0529bd4",
        "shard-000003.tar": "4e82ffad9dc4c8774c88fdee3036973dfd401a1a11e92525ae51e0be66e3d119",
    }),
    "ddnet": (["--mode", "ddnet", "--crop", "192", "--crops-per-image", "1", "--shard-size", "8", "--seed", "5"], {
        "shard-000000.tar": "9b214a43561ace2358f6760c24819703fa007b86832a27a9d4f7ff262f881a01",
    }),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_generate_on_the_bundled_photos_gives_the_golden_shards(name, tmp_path):
    flags, expected = GOLDEN[name]
    out = tmp_path / name
    assert main(["generate", "--out", str(out), "--no-progress", "--workers", "2", *flags]) == 0
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}
    assert got == expected
