import os

import pytest

from rawsynth.errors import InputError
from rawsynth.sources import BUNDLED_PHOTOS, Source, bundled_sources, collect_sources


def test_folders_files_and_lists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for p in ("a/x.png", "a/sub/y.JPG", "a/notes.txt", "b.webp", "a/sub/z.tiff"):
        (tmp_path / p).write_bytes(b"")
    (tmp_path / "list.txt").write_text("# my list\nb.webp\n\na/x.png\n")
    got = collect_sources(["a"])
    assert [s.name for s in got] == ["a/sub/y.JPG", "a/sub/z.tiff", "a/x.png"]  # sorted, recursive, no .txt
    got = collect_sources(["list.txt", "a/x.png", "a"])
    assert [s.name for s in got] == ["a/sub/y.JPG", "a/sub/z.tiff", "a/x.png", "b.webp"]  # de-duplicated
    assert all(isinstance(s, Source) and os.path.exists(s.path) for s in got)
    with pytest.raises(InputError, match="no such file or folder"):
        collect_sources(["missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        collect_sources(["empty"])


def test_bundled_photos_are_machine_independent_names():
    srcs = collect_sources([])
    assert srcs == bundled_sources() and len(srcs) == len(BUNDLED_PHOTOS)
    assert all(s.name.startswith("skimage.data/") and os.path.isfile(s.path) for s in srcs)
