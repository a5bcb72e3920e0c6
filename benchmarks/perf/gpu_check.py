"""One-shot GPU kit: every GPU figure the project owes, in one run on the lent H200, written to ``--out``.
See ``docs/gpu.md``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import gpu_wheels as _wheels

#: Seconds for the whole kit (the device's one command may run 600 s; this leaves time to copy results back).
BUDGET_S = 470


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    argv: tuple[str, ...]  # after ``python -m``
    timeout_s: int
    json_out: bool = False  # the step prints one JSON object as its last line


STEPS = (
    Step("cuda-tests", "the CUDA tests (kernels vs reference at 512², GPU degradation, on-the-fly pairs)",
         ("pytest", "-x", "-q", "-p", "no:cacheprovider", "tests/kernels/test_cuda.py", "tests/degrade/test_gpu.py",
          "tests/degrade/test_gpu_parts.py::test_cuda_uploads_and_tensor_jpeg", "tests/test_onthefly.py"), 120),
    Step("kernels", "IPTP+MNS variants (dn, dn-fast, pair, pair-fast, clean) and PTP at B=256, 512²: bandwidth vs "
         "device copy, LQ+HQ pairs/s (do_bench, L2 flushed)",
         ("benchmarks.perf.kernels", "--batch", "256", "--size", "512", "--repeats", "30", "--warmup", "3",
          "--json", "{out}/kernels.json"), 80),
    Step("synthesis", "GPU synthesis (degradation + IPTP+MNS) pairs/s at 512², B=64 and 256",
         ("benchmarks.perf.gpu_synthesis", "--device", "cuda", "--batch", "64", "256", "--crop", "512",
          "--batches", "4", "--warmup", "3"), 90),
    Step("restore-512", "one-step restore of a 512² mosaic, SD-2.1 sizes, random weights, bf16 (ms)",
         ("rddm.restore.memory", "--size", "512x512", "--device", "cuda", "--dtype", "bf16"), 30, True),
    Step("restore-24mp", "tiled 24-MP restore (6000x4000, 512 tiles), bf16 (s, peak memory)",
         ("rddm.restore.memory", "--size", "6000x4000", "--device", "cuda", "--dtype", "bf16", "--tile-batch", "8"),
         70, True),
    Step("train-step", "one rddm train step at 512², batch 2, bf16 (peak memory, s/step)",
         ("rddm.scripts.memory", "--stage", "rddm", "--size", "512", "--batch-size", "2", "--device", "cuda",
          "--mixed-precision", "bf16", "--steps", "1"), 80, True),
)

#: Import name -> the wheel (``name==version``) the H200 image lacks; the list, why each is there and how it is made
#: (basicsr: built here, ``pip wheel --no-deps basicsr==1.4.2``) live in :mod:`benchmarks.perf.gpu_wheels`.
WHEELS = {w.module: w.pin for w in _wheels.WHEELS}
#: The device machine's limit on what travels with one call (working tree + carried paths).
CARRY_LIMIT = _wheels.CARRY_LIMIT
#: What the kit needs to import on the GPU machine (beyond the standard library). Checked against the imports
#: themselves by ``tests/test_gpu_check.py`` (the kit's modules import with only these and the image's packages).
NEEDS = ("torch", "torchvision", "triton", "numpy", "cv2", "yaml", "pytest", "diffusers", "peft", "transformers",
         "safetensors", "webdataset", "braceexpand", "basicsr", "tifffile", "skimage")


def check_env(wheel_dir: Path | None) -> dict:
    """What the kit would need here: Python, torch/triton/torchvision versions, CUDA, the importable packages,
    the missing ones and whether ``wheel_dir`` carries them, and the size of what would travel."""
    info: dict = {"python": platform.python_version(), "cuda": False, "missing": [], "versions": {}}
    for mod in NEEDS:
        if importlib.util.find_spec(mod) is None:
            info["missing"].append(mod)
    try:
        import torch

        info["cuda"] = bool(torch.cuda.is_available())
        info["versions"]["torch"] = torch.__version__
        if info["cuda"]:
            info["device"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    for mod in ("triton", "torchvision"):
        try:
            info["versions"][mod] = __import__(mod).__version__
        except ImportError:
            pass
    carry = _wheels.measure(wheel_dir if wheel_dir is not None else Path(_wheels.DEFAULT_DEST))
    info["wheels_present"] = [r["file"] for r in carry["wheels"]]
    info["wheels_bytes"] = carry["wheels_bytes"]
    info["carry"] = carry
    have = {r["dist"] for r in carry["wheels"]}
    stems = {w.module: w.stem for w in _wheels.WHEELS}
    info["missing_without_wheel"] = [m for m in info["missing"] if stems.get(m) not in have]
    info["carry_ok"] = carry["fits"] and not carry["twice"]
    return info


def _cmd(step: Step, out: Path) -> list[str]:
    return [sys.executable, "-m", *(a.replace("{out}", str(out)) for a in step.argv)]


def _last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_step(step: Step, out: Path, left_s: float) -> dict:
    """Run one step as a subprocess (its own time limit, never past the kit's budget); its log goes to
    ``out/<name>.log``."""
    limit = max(5, min(step.timeout_s, int(left_s)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(_cmd(step, out), capture_output=True, text=True, timeout=limit, env=env)
        rc, log = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        log = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
              f"\n[gpu_check] step stopped at its limit of {limit} s\n"
    sec = time.perf_counter() - t0
    (out / f"{step.name}.log").write_text(log)
    return {"name": step.name, "what": step.what, "command": " ".join(_cmd(step, out)), "rc": rc,
            "seconds": round(sec, 1), "limit_s": limit, "result": _last_json(log) if step.json_out else None,
            "tail": log[-3000:]}


def write_report(out: Path, env: dict, results: list[dict]) -> None:
    (out / "gpu_check.json").write_text(json.dumps({"env": env, "steps": results}, indent=1))
    lines = [f"# gpu_check on {env.get('device', 'no GPU')}", "",
             f"python {env['python']}, " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
             "| step | what | rc | s | result |", "|---|---|---|---|---|"]
    for r in results:
        res = json.dumps(r["result"])[:300] if r["result"] else "see log"
        lines.append(f"| {r['name']} | {r['what']} | {r['rc']} | {r['seconds']} | {res} |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the step logs")
    p.add_argument("--dry-run", action="store_true", help="check the environment, list steps and wheels, exit")
    p.add_argument("--wheels", default=".whl", help="folder of carried wheels (default .whl)")
    p.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], help="run only these steps")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    env = check_env(Path(a.wheels))
    steps = [s for s in STEPS if not a.only or s.name in a.only]
    if a.dry_run:
        print(f"environment: python {env['python']}, " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
              + f", CUDA {'yes: ' + env.get('device', '') if env['cuda'] else 'no'}")
        print(f"missing here: {env['missing'] or 'nothing'}")
        print("wheels to carry (the H200 image lacks them; python -m benchmarks.perf.gpu_wheels list says why):")
        for mod, wheel in WHEELS.items():
            print(f"  {wheel:24s} (import {mod})")
        print("\n".join(_wheels.report(env["carry"])))
        print(f"steps (budget {BUDGET_S} s in all):")
        for s in steps:
            print(f"  {s.name:13s} <= {s.timeout_s:3d} s  {s.what}\n                  python -m {' '.join(s.argv)}")
        if sum(s.timeout_s for s in steps) > BUDGET_S:
            print("error: the steps' limits exceed the budget")
            return 1
        if not env["carry_ok"]:
            c = env["carry"]
            print(f"error: what would travel ({c['total_bytes'] / 2**20:.1f} MiB: the wheels in {a.wheels} and the "
                  f"working tree) is over the device's {CARRY_LIMIT // 2**20} MiB carry limit, or a package is there "
                  "in two versions; remove wheels the kit does not list, or ignore large untracked files")
            return 1
        print("dry run: nothing was run")
        return 0
    if not env["cuda"]:
        print("gpu_check needs a CUDA device; use --dry-run to check the environment without one")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    for s in steps:
        left = BUDGET_S - (time.perf_counter() - t0)
        if left < 5:
            results.append({"name": s.name, "what": s.what, "command": " ".join(_cmd(s, out)), "rc": None,
                            "seconds": 0, "limit_s": 0, "result": None, "tail": "skipped: the kit's budget is spent"})
            continue
        r = run_step(s, out, left)
        results.append(r)
        print(f"[gpu_check] {s.name}: rc {r['rc']} in {r['seconds']} s", flush=True)
        write_report(out, env, results)  # after every step: a later hang keeps what ran
    write_report(out, env, results)
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
