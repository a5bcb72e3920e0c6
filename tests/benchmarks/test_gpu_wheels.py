"""The GPU kit's wheels (benchmarks/perf/gpu_wheels.py): the list is complete for what the kit imports on the H200
image, the size check adds up what travels, and the dry run fails clearly when it does not fit."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.perf import gpu_check, gpu_wheels

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: md.Distribution) -> list[str]:
    out = []
    for r in dist.requires or []:
        if "extra ==" in r or "extra==" in r:
            continue
        out.append(_norm(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]))
    return out


def _image_like_site(site: Path) -> set[str]:
    """A folder of links to the installed distributions the H200 image would have: the image's packages
    (:data:`gpu_wheels.IMAGE_PACKAGES`) with everything they require as installed here (the image has their
    requirements, in its versions), plus the kit's wheels (:data:`gpu_wheels.WHEELS`) WITHOUT their requirements
    (a wheel whose requirement the image lacks must be listed itself). Returns the distributions linked."""
    installed = {_norm(d.metadata["Name"]): d for d in md.distributions()}
    todo = [n for n in map(_norm, gpu_wheels.IMAGE_PACKAGES) if n in installed]
    todo += [n for n in ("opencv-python",) if n in installed]  # the image's cv2 is opencv-python-headless
    allowed: set[str] = set()
    while todo:
        n = todo.pop()
        if n in allowed or n not in installed:
            continue
        allowed.add(n)
        todo += _requires(installed[n])
    allowed |= {_norm(w.name) for w in gpu_wheels.WHEELS}
    site.mkdir()
    for n in allowed:
        d = installed.get(n)
        if d is None:
            continue
        for top in {f.parts[0] for f in d.files or [] if f.parts[0] not in ("..", "/") and not f.name.endswith(".pth")}:
            src, dst = Path(d.locate_file(top)), site / top
            if src.exists() and not os.path.lexists(dst):
                dst.symlink_to(src)
    return allowed


PROBE = """
import importlib, json, sys
from rawsynth.compat.basicsr import DiffJPEG, degradations
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}"
try:
    degradations(), DiffJPEG()
except Exception as e:
    failed["basicsr"] = f"{type(e).__name__}: {e}"
import pytest  # the three CUDA test files of the kit's first step collect there too (same process: one torch import)
rc = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests/kernels/test_cuda.py",
                  "tests/degrade/test_gpu.py", "tests/test_onthefly.py"])
if rc != 0:
    failed["pytest --collect-only"] = f"exit code {int(rc)}"
print(json.dumps(failed))
"""
#: What the kit's steps import (gpu_check.STEPS), and the library modules they reach.
KIT_MODULES = ("benchmarks.perf.kernels", "benchmarks.perf.gpu_synthesis", "benchmarks.perf.gpu_check",
               "rddm.restore.memory", "rddm.scripts.memory", "rddm.models.rddm", "rddm.train", "rawsynth.onthefly",
               "rawsynth.kernels", "rawsynth.degrade", "rawsynth.generate", "rawsynth.shards", "rawsynth.data",
               "webdataset", "diffusers")


def test_the_kit_imports_with_only_the_image_packages_and_its_wheels(tmp_path):
    """Independent of the list itself: the kit's modules and test files import in a Python that sees only the
    H200 image's packages (KINDS.md's list, with their requirements) and the kit's wheels (each without its
    requirements); everything else installed here is hidden (``python -S``, no site-packages)."""
    for w in gpu_wheels.WHEELS:
        try:
            md.distribution(w.name)
        except md.PackageNotFoundError:
            pytest.skip(f"{w.name} is not installed here")
    allowed = _image_like_site(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path / "site")]), PYTHONNOUSERSITE="1")
    p = subprocess.run([sys.executable, "-S", "-c", PROBE, *KIT_MODULES], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "{}", p.stdout[-3000:]
    assert re.search(r"\d+ tests? collected", p.stdout), p.stdout[-3000:]
    # and it is a real restriction: packages installed here that the image lacks were hidden
    assert "dask" not in allowed and "rawpy" not in allowed and "kornia" not in allowed


def test_no_wheel_is_already_on_the_image():
    image = {_norm(n) for n in gpu_wheels.IMAGE_PACKAGES}
    assert not [w.name for w in gpu_wheels.WHEELS if _norm(w.name) in image]
    assert set(gpu_check.WHEELS) == {w.module for w in gpu_wheels.WHEELS}


def _fake_wheel(folder: Path, name: str, version: str, size: int = 100, pure: bool = True) -> Path:
    p = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(pure).lower()}\n")
        z.writestr(f"{name}/__init__.py", "x" * size)
    return p


def test_measure_adds_up_what_travels(tmp_path):
    folder = tmp_path / "whl"
    folder.mkdir()
    files = [_fake_wheel(folder, w.stem, w.version) for w in gpu_wheels.WHEELS[:-1]]
    files.append(_fake_wheel(folder, "stray", "1.0"))
    m = gpu_wheels.measure(folder, ROOT)
    assert m["wheels_bytes"] == sum(f.stat().st_size for f in files)
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    assert m["tree_bytes"] >= sum((ROOT / n).stat().st_size for n in tracked.decode().split("\0")
                                  if n and (ROOT / n).is_file() and not (ROOT / n).is_symlink())
    assert m["total_bytes"] == m["wheels_bytes"] + m["tree_bytes"] and m["fits"]
    assert m["missing"] == [gpu_wheels.WHEELS[-1].pin] and m["extra"] == ["stray-1.0-py3-none-any.whl"]
    assert all(r["pure"] for r in m["wheels"]) and not m["twice"]
    _fake_wheel(folder, gpu_wheels.WHEELS[0].stem, "0.0.1")
    assert gpu_wheels.measure(folder, ROOT)["twice"] == [gpu_wheels.WHEELS[0].stem]


def test_dry_run_fails_clearly_over_the_carry_limit(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "whl"
    folder.mkdir()
    for w in gpu_wheels.WHEELS:
        _fake_wheel(folder, w.stem, w.version, size=1000)
    assert gpu_check.main(["--out", str(tmp_path / "o"), "--dry-run", "--wheels", str(folder)]) == 0
    assert "fits" in capsys.readouterr().out
    monkeypatch.setattr(gpu_wheels, "CARRY_LIMIT", 4096)
    monkeypatch.setattr(gpu_check, "CARRY_LIMIT", 4096)
    assert gpu_check.main(["--out", str(tmp_path / "o"), "--dry-run", "--wheels", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "OVER THE LIMIT" in out and "error: what would travel" in out and "carry limit" in out


def test_the_wheel_folder_is_ignored_by_git():
    p = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", f"{gpu_wheels.DEFAULT_DEST}/x.whl"])
    assert p.returncode == 0


def test_fetch_commands_target_the_h200_python():
    dl = gpu_wheels.download_command(".whl", "python3")
    assert dl[dl.index("--python-version") + 1] == "3.12" and "--no-deps" in dl and "--only-binary=:all:" in dl
    assert "manylinux_2_28_x86_64" in dl and all(w.pin in dl for w in gpu_wheels.WHEELS if w.how == "download")
    assert gpu_wheels.build_command(".whl", "python3")[-1] == "basicsr==1.4.2"
