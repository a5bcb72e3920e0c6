"""Every Python example in docs/ and the README runs as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"])
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
EXAMPLES = [(p.relative_to(ROOT), i, code) for p in PAGES for i, code in enumerate(BLOCK.findall(p.read_text()))]


@pytest.mark.parametrize("page,index,code", EXAMPLES, ids=[f"{p}#{i}" for p, i, _ in EXAMPLES])
def test_python_examples_run(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page}#{index}", "exec"), {"__name__": "__docs__"})


def test_there_are_examples():
    assert any(str(p) == "docs/isp.md" for p, _, _ in EXAMPLES)
