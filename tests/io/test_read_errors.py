"""Every reader names a missing file and an empty file the same way (``InputError.reason``)."""

from __future__ import annotations

import pytest

from rawsynth.io.png16 import read_png16
from rawsynth.io.raw import read_raw

from ..conftest import input_error


@pytest.mark.parametrize("read, suffix", [(read_raw, ".dng"), (read_png16, ".png")], ids=["raw", "png16"])
def test_missing_and_empty_files(read, suffix, tmp_path):
    e = input_error(read, tmp_path / f"nope{suffix}")
    assert e.reason == "unreadable" and f"nope{suffix}" in str(e)
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    assert input_error(read, tmp_path / f"empty{suffix}").reason == "empty file"
