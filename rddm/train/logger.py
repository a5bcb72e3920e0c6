"""Training logs on rank 0: TensorBoard, ``metrics.jsonl`` and a progress bar; peak memory per process.
See ``docs/training.md``."""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.distributed as dist

from ..errors import ConfigError
from .distributed import DistEnv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .checkpoint import Run


def peak_memory(env: DistEnv) -> dict:
    """Peak memory of this process: CUDA ``max_memory_allocated``/``max_memory_reserved`` or the CPU peak RSS
    (MiB)."""
    out = {}
    if env.device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(env.device) / 2**20, 1)
        out["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved(env.device) / 2**20, 1)
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["cpu_peak_rss_mib"] = round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
    except ImportError:  # pragma: no cover - Windows
        pass
    return out


class TrainLogger:
    """TensorBoard + ``metrics.jsonl`` + tqdm on rank 0; values are averaged over the ranks when logged.

    Every rank must call :meth:`log` at every step (the averaging is collective on logging steps).
    """

    def __init__(self, run: Run, start_step: int, progress: bool = True, desc: str = "train"):
        self.run, self.env, self.cfg = run, run.env, run.cfg
        self.bar = self.tb = None
        self.metrics = run.out / "metrics.jsonl"
        self.t_last, self.s_last = time.time(), start_step
        if not self.env.is_main:
            return
        if self.metrics.exists():  # drop lines after the resumed step (they are redone)
            keep = [ln for ln in self.metrics.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            self.metrics.write_text("".join(ln + "\n" for ln in keep))
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("tensorboard: true needs the tensorboard package",
                                  fix="pip install tensorboard, or set tensorboard: false") from None
            self.tb = SummaryWriter(str(run.out / "logs"), purge_step=start_step + 1 if start_step else None)
        from tqdm import tqdm

        self.bar = tqdm(total=self.cfg.max_steps, initial=start_step, desc=desc, disable=not progress,
                        dynamic_ncols=True, unit="step")

    def log(self, step: int, values: dict[str, float | torch.Tensor], force: bool = False) -> dict | None:
        """Record ``values`` for ``step`` if it is a logging step (every ``log_every`` and the last) or ``force``
        (the same on every rank: e.g. a step the non-finite guard skipped). Non-finite values are recorded as they
        are (``NaN``/``Infinity`` in ``metrics.jsonl``, and in TensorBoard), never hidden."""
        if self.bar is not None:
            self.bar.update(1)
        if not force and step % self.cfg.log_every and step != self.cfg.max_steps:
            return None
        names = sorted(values)
        vec = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=self.env.device)
        if self.env.distributed:
            dist.all_reduce(vec)
            vec /= self.env.world_size
        row = {k: float(v) for k, v in zip(names, vec.tolist())}
        if not self.env.is_main:
            return row
        now = time.time()
        row["steps_per_s"] = (step - self.s_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.s_last = now, step
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"step": step, **row}, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(f"train/{k}", v, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.4g}" for k in names[:4]}, refresh=False)
        return row

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        if self.bar is not None:
            self.bar.close()
