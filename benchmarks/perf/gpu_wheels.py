"""The wheels the one-shot GPU kit (:mod:`benchmarks.perf.gpu_check`) carries to the lent H200, and their size.

The H200 image (Python 3.12, torch 2.11, triton 3.6, torchvision 0.26; ``/work/.library/device/KINDS.md``) has no
package registry: what it lacks travels as wheels in an ignored folder of the checkout (``.whl``), named in the
``device`` call's ``carry``, within the device's 64 MiB limit on everything that travels (the working tree plus the
carried paths). :data:`WHEELS` lists them; :func:`fetch` gets them here (``pip download`` of the published
wheels for CPython 3.12 manylinux x86-64, ``pip wheel`` for basicsr, which publishes only an sdist);
:func:`measure` adds up what would travel and says whether it fits.

    python -m benchmarks.perf.gpu_wheels fetch [--dest .whl]   # or: make wheels
    python -m benchmarks.perf.gpu_wheels check [--dest .whl]   # sizes, missing/extra wheels, the carry limit

Which packages: every third-party module the kit's steps import (the CUDA tests, the kernel and synthesis
benchmarks, ``rddm.restore.memory``, ``rddm.scripts.memory``), less those the image has
(:data:`IMAGE_PACKAGES`, as KINDS.md lists them). ``tests/test_gpu_check.py`` checks the list against the
imports themselves: the kit's modules import with every other distribution hidden.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Wheel", "WHEELS", "IMAGE_PACKAGES", "CARRY_LIMIT", "fetch", "measure", "tree_bytes", "main"]

#: The device machine's limit on what travels with one call: the working tree (tracked and untracked files git
#: does not ignore) plus the carried paths (/work/.library/device/README.md, "Limits").
CARRY_LIMIT = 64 * 2**20
#: The repository root (what travels is this checkout's working tree).
ROOT = Path(__file__).resolve().parents[2]
#: Where the wheels go (git-ignored; named in the ``device`` call's ``carry``).
DEFAULT_DEST = ".whl"
#: The ``pip download`` platform tags for the H200 machine (x86-64 manylinux; pip matches each tag exactly).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


@dataclass(frozen=True)
class Wheel:
    """One package the kit carries: ``name==version``, the module the kit imports, and how the wheel is made
    (``"download"``: a published py3 or cp312 wheel; ``"build"``: built here from the sdist, pure Python)."""

    name: str
    version: str
    module: str
    how: str = "download"
    why: str = ""

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def stem(self) -> str:
        """The distribution name as wheel file names spell it (PEP 427: ``-``/``.`` become ``_``)."""
        return self.name.lower().replace("-", "_").replace(".", "_")


#: What the H200 image lacks and the kit imports (versions: those of ``constraints.txt``, which the suite passes
#: with; diffusers also on the torch-2.11 stack of ``constraints-min.txt``).
WHEELS: tuple[Wheel, ...] = (
    Wheel("diffusers", "0.36.0", "diffusers", why="rddm's VAE and UNet (restore and train steps)"),
    Wheel("webdataset", "1.0.2", "webdataset", why="shard writing and reading (on-the-fly tests)"),
    Wheel("braceexpand", "0.1.7", "braceexpand", why="imported by webdataset"),
    Wheel("basicsr", "1.4.2", "basicsr", how="build",
          why="Real-ESRGAN kernels in the degradation (GPU degradation tests, synthesis benchmark)"),
)

#: The Python distributions of the H200 image ('cuda'), as /work/.library/device/KINDS.md lists them (read on a
#: machine on 2026-11-17). A kit wheel must not be one of these (carry one only for another version).
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split())


def download_command(dest: str | Path, python: str = sys.executable) -> list[str]:
    """``pip download`` of the published wheels of :data:`WHEELS` for CPython 3.12 on manylinux x86-64, no
    dependencies (each one the kit needs is listed itself)."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    return cmd + [w.pin for w in WHEELS if w.how == "download"]


def build_command(dest: str | Path, python: str = sys.executable) -> list[str]:
    """``pip wheel`` of the packages of :data:`WHEELS` that publish only an sdist (basicsr: pure Python, its CUDA
    extensions are built only with ``BASICSR_EXT=True``, so the wheel is ``py3-none-any``)."""
    return [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-w", str(dest)] + \
        [w.pin for w in WHEELS if w.how == "build"]


def fetch(dest: str | Path = DEFAULT_DEST, python: str = sys.executable) -> None:
    """Get every wheel of :data:`WHEELS` into ``dest`` (needs the package registry; run here, not on the GPU
    machine). Raises :class:`subprocess.CalledProcessError` when pip fails."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    subprocess.run(download_command(dest, python), check=True)
    subprocess.run(build_command(dest, python), check=True, env=_no_ext_env())


def _no_ext_env() -> dict:
    import os

    env = dict(os.environ)
    env.pop("BASICSR_EXT", None)  # pure Python: no CUDA extensions compiled into the wheel
    return env


def tree_bytes(root: str | Path = ROOT) -> int | None:
    """Bytes of the working tree that travels with a ``device`` call (tracked and untracked files git does not
    ignore), or ``None`` outside a git checkout."""
    root = Path(root)
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in out.decode("utf-8", "surrogateescape").split("\0"):
        p = root / name
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def _wheel_meta(path: Path) -> tuple[str, str, bool]:
    """(distribution stem, version, pure) from a wheel's file name and its ``WHEEL`` file."""
    stem, version = path.name.split("-")[:2]
    pure = False
    try:
        with zipfile.ZipFile(path) as z:
            wheel = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
            pure = b"Root-Is-Purelib: true" in z.read(wheel)
    except (OSError, zipfile.BadZipFile, StopIteration):
        pass
    return stem.lower(), version, pure


def measure(dest: str | Path = DEFAULT_DEST, root: str | Path = ROOT) -> dict:
    """What would travel: each wheel in ``dest`` (name, bytes, pure Python or not), their total, the working
    tree's size, the wheels of :data:`WHEELS` missing from ``dest``, wheels there that the list does not name,
    distributions present in two versions (pip's ``--no-index`` install then stops), and ``fits``:
    tree + wheels < :data:`CARRY_LIMIT`."""
    dest = Path(dest)
    files = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    rows = []
    for f in files:
        stem, version, pure = _wheel_meta(f)
        rows.append({"file": f.name, "dist": stem, "version": version, "bytes": f.stat().st_size, "pure": pure})
    want = {w.stem: w for w in WHEELS}
    have = {}
    for r in rows:
        have.setdefault(r["dist"], []).append(r["version"])
    missing = [w.pin for w in WHEELS if w.version not in have.get(w.stem, [])]
    extra = [r["file"] for r in rows if r["dist"] not in want]
    twice = sorted(d for d, v in have.items() if len(v) > 1)
    wheels = sum(r["bytes"] for r in rows)
    tree = tree_bytes(root)
    total = wheels + (tree or 0)
    return {"dest": str(dest), "wheels": rows, "wheels_bytes": wheels, "tree_bytes": tree, "total_bytes": total,
            "limit_bytes": CARRY_LIMIT, "missing": missing, "extra": extra, "twice": twice,
            "fits": total < CARRY_LIMIT}


def report(m: dict) -> list[str]:
    """Lines describing :func:`measure`'s result (printed by ``check`` and by ``gpu_check --dry-run``)."""
    mib = 2**20
    lines = [f"wheels in {m['dest']} ({len(m['wheels'])}, the H200 image lacks them):"]
    for r in m["wheels"]:
        lines.append(f"  {r['file']:58s} {r['bytes'] / mib:7.2f} MiB{'' if r['pure'] else '  (platform wheel)'}")
    tree = "unknown (not a git checkout)" if m["tree_bytes"] is None else f"{m['tree_bytes'] / mib:.2f} MiB"
    lines.append(f"wheels {m['wheels_bytes'] / mib:.2f} MiB + working tree {tree} = {m['total_bytes'] / mib:.2f} MiB "
                 f"of the {m['limit_bytes'] // mib} MiB carry limit: {'fits' if m['fits'] else 'OVER THE LIMIT'}")
    if m["missing"]:
        lines.append(f"missing wheels: {', '.join(m['missing'])} (make wheels, or python -m "
                     f"benchmarks.perf.gpu_wheels fetch --dest {m['dest']})")
    if m["extra"]:
        lines.append(f"wheels the kit does not list (they travel too): {', '.join(m['extra'])}")
    if m["twice"]:
        lines.append(f"two versions of {', '.join(m['twice'])}: pip --no-index stops; keep one")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.gpu_wheels", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["fetch", "check", "list"],
                   help="fetch: download/build the wheels, then check; check: sizes and the carry limit; list: the "
                        "wheels and why")
    p.add_argument("--dest", default=DEFAULT_DEST, help=f"wheel folder (default {DEFAULT_DEST}, git-ignored)")
    a = p.parse_args(argv)
    if a.action == "list":
        for w in WHEELS:
            print(f"{w.pin:20s} {'built here' if w.how == 'build' else 'published wheel':16s} {w.why}")
        return 0
    if a.action == "fetch":
        fetch(a.dest)
    m = measure(a.dest)
    print("\n".join(report(m)))
    return 0 if m["fits"] and not m["missing"] and not m["twice"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
