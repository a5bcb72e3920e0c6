"""Golden outputs of ``rawsynth generate``: the two runs named in issue 12 must give these shard bytes on the
pinned stack (``constraints.txt``), before and after any refactor. A change that moves a hash changes what the
library produces: it is a behaviour change and needs its own issue, not a refactor.

They are the sha256 of each shard tar, which holds every sample's RAW, linear HQ, sRGB crops and metadata.
"""

from __future__ import annotations

import hashlib

import pytest

from rawsynth.cli import main

# format version 1 (``--format-version 1``): recorded with the code of commit a0af4dd, before the architecture
# consolidation, the reliability work and the version-2 format (issue 19) — format 1 must stay what it was
GOLDEN_V1 = {
    "rddm": {
        "shard-000000.tar": "35987a0d86eec2d1da98435eed28b515fdf22c064ab1c2ca6eedc741be404f45",
        "shard-000001.tar": "caecdc7f162696b4e6ffc87e4c6a5669959ab7738c98dc36ebdfbb02c5c0fed8",
        "shard-000002.tar": "e2506aa87bf6cd4f636e147938412f4177417d4967908737c36b30adf0529bd4",
        "shard-000003.tar": "4e82ffad9dc4c8774c88fdee3036973dfd401a1a11e92525ae51e0be66e3d119",
    },
    "ddnet": {"shard-000000.tar": "9b214a43561ace2358f6760c24819703fa007b86832a27a9d4f7ff262f881a01"},
}
# the default, format version 2 (``.npy`` members, stable meta.json): recorded when issue 19 introduced it
GOLDEN_V2 = {
    "rddm": {
        "shard-000000.tar": "3b8a8e92178d1d2e53d86c79b7d55a3f255c7937fa357512a9643de3313ce466",
        "shard-000001.tar": "7c2276fe3243f57a702c796180b4eb206edb89d87bba2a926bc3b88b3bf0fb6d",
        "shard-000002.tar": "6b706f02c66de91c8139715e1c7c3efef66849db0dad16e2fa93c24c6917d013",
        "shard-000003.tar": "ac4a3ed7b5089720623493cdcdca0e01ebb3d149c4862ba948cb2b5fca7fa36c",
    },
    "ddnet": {"shard-000000.tar": "f7a1ac9605b2353bea382f8fa9bc9cb9d0b13146bd0baf5cd995d9fdde678804"},
}
FLAGS = {
    "rddm": ["--crop", "256", "--crops-per-image", "2", "--shard-size", "4", "--save-srgb", "--seed", "0"],
    "ddnet": ["--mode", "ddnet", "--crop", "192", "--crops-per-image", "1", "--shard-size", "8", "--seed", "5"],
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", sorted(FLAGS))
def test_generate_on_the_bundled_photos_gives_the_golden_shards(name, version, tmp_path):
    expected = (GOLDEN_V1 if version == 1 else GOLDEN_V2)[name]
    out = tmp_path / name
    extra = ["--format-version", "1"] if version == 1 else []  # the default is version 2
    assert main(["generate", "--out", str(out), "--no-progress", "--workers", "2", *FLAGS[name], *extra]) == 0
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}
    assert got == expected
