"""Training runs and their checkpoints (:class:`Run`): ``OUT/checkpoints/step-NNNNNN/``, written under a
temporary name and renamed when complete; exact resume (see ``docs/training.md``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from rawsynth._version import __version__
from rawsynth.io.atomic import atomic_output

from ..config import TrainConfig, config_diff, config_from_dict, load_yaml, save_config
from ..errors import CheckpointError, ConfigError, WeightsError
from .checkpoint_io import estimate_bytes, recover_checkpoints, storage_errors, write_checkpoint_dir
from .distributed import DistEnv, _all_gather
from .logger import peak_memory

#: Config keys that may change when a run is resumed (everything else must match the checkpoint's config).
MUTABLE_KEYS = ("max_steps", "log_every", "save_every", "keep_checkpoints", "tensorboard", "data.num_workers",
                "data.shards", "data.handler", "data.verify", "data.onthefly.sources")
#: The files of a checkpoint folder besides the model folders.
CHECKPOINT_FILES = ("config.yaml", "rng_states.pt", "trainer_state.json", "training_state.pt")


def model_digest(model: nn.Module) -> str:
    """SHA-256 of every tensor of the state dict (sorted keys): equal digests mean bitwise-equal weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_model_weights(model: nn.Module, folder: Path) -> None:
    """Load the weights a checkpoint saved for ``model`` (with its ``save_pretrained``) back into it, in place.

    * A model with a ``load_checkpoint_weights(folder)`` method loads itself (e.g. :class:`rddm.models.rddm.RDDM`,
      whose folder holds only its LoRA groups and a reference to the frozen base model).
    * A model with CMB LoRA groups (e.g. an :class:`~rddm.models.rvae.RVAE` after ``add_cmb_lora``): its own
      weights from ``diffusion_pytorch_model.safetensors`` (plain names) and each group's from
      ``cmb_lora/<PATTERN>/`` into the adapters it already has.
    * Any other diffusers model: ``diffusion_pytorch_model.safetensors``, strictly.

    Raises:
        CheckpointError: missing files or weights that do not fit (with the folder named).
    """
    hook = getattr(model, "load_checkpoint_weights", None)
    if callable(hook):
        hook(folder)
        return
    from safetensors.torch import load_file

    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    from .. import lora as _lora

    if not _lora.cmb_groups(model):
        model.load_state_dict(sd, strict=True)
        return
    own = {k: k.replace(".base_layer.", ".") for k in model.state_dict() if "lora_" not in k}
    missing = sorted(set(own.values()) - set(sd))
    if missing or len(sd) != len(own):
        raise CheckpointError(f"the saved weights do not fit the model (missing {missing[:3]}, "
                              f"{len(sd)} saved vs {len(own)} expected)", path=folder)
    model.load_state_dict({k: sd[v] for k, v in own.items()}, strict=False)
    try:
        _lora.load_cmb_weights(model, folder / _lora.CMB_DIR)  # in place: the optimizer keeps its parameters
    except WeightsError as e:
        raise CheckpointError(e.message, path=folder / _lora.CMB_DIR, fix=e.fix) from None


def nonfinite_tensors(model) -> list[str]:
    """Names of the floating-point tensors of ``model.state_dict()`` that hold a NaN or an Inf."""
    return [k for k, v in model.state_dict().items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


class Run:
    """A training output folder: config, checkpoints, final models and summary (see ``docs/training.md``).

    Build it with :meth:`start`; it decides whether this is a new run or a resumed one.
    """

    def __init__(self, out: Path, cfg: TrainConfig, env: DistEnv, resume_from: Path | None):
        self.out, self.cfg, self.env, self.resume_from = out, cfg, env, resume_from
        self.ckpt_root = out / "checkpoints"
        self.t0 = time.time()

    @staticmethod
    def checkpoints(out: str | os.PathLike) -> list[Path]:
        """The complete checkpoints of an output folder, oldest first."""
        root = Path(out) / "checkpoints"
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                 and p.name[5:].isdigit() and (p / "trainer_state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[5:]))

    @classmethod
    def start(cls, out: str | os.PathLike, cfg: TrainConfig, env: DistEnv, resume: str | None) -> Run:
        """Prepare ``out`` for a new run, or find the checkpoint to resume.

        Args:
            out: the output folder (created with its parents).
            cfg: the resolved config.
            env: this process.
            resume: ``None`` (new run), ``"latest"`` (the newest checkpoint in ``out``) or a checkpoint folder.

        Raises:
            CheckpointError: a new run into a folder that holds one, or nothing to resume.
            ConfigError: resuming with a config that differs from the checkpoint's in keys other than
                :data:`MUTABLE_KEYS`.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise CheckpointError("--out exists and is not a folder", path=out)
        if env.is_main:  # a kill while a step was saved again: put the set-aside copy back
            recover_checkpoints(out / "checkpoints")
        env.barrier()
        ckpts = cls.checkpoints(out)
        resume_from = None
        if resume is None:
            if ckpts:  # a config.yaml alone is a start that failed before its first checkpoint: start again
                raise CheckpointError(f"this folder already holds a training run ({ckpts[-1].name})", path=out,
                                      fix="pass --resume to continue it, or choose a new --out")
        else:
            if resume == "latest":
                if not ckpts:
                    raise CheckpointError("no checkpoint to resume in checkpoints/", path=out,
                                          fix="run without --resume to start training")
                resume_from = ckpts[-1]
            else:
                resume_from = Path(resume)
                if not (resume_from / "trainer_state.json").is_file():
                    raise CheckpointError("not a complete checkpoint folder (no trainer_state.json)", path=resume_from,
                                          fix="pass --resume alone (the newest checkpoint of --out) or a "
                                              "checkpoints/step-NNNNNN folder")
            saved_file = resume_from / "config.yaml"
            saved = config_from_dict(type(cfg), load_yaml(saved_file), source=saved_file)
            changed = [k for k in config_diff(saved, cfg) if k not in MUTABLE_KEYS]
            if changed:
                raise ConfigError(f"the config differs from the checkpoint's in {changed} (only {list(MUTABLE_KEYS)} "
                                  "may change on resume)", path=resume_from / "config.yaml",
                                  fix="resume with the same config (omit --config to reuse OUT/config.yaml), or "
                                      "start a new run in a new --out")
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
            if resume_from is not None:
                shutil.rmtree(out / "checkpoints" / f"{resume_from.name}.tmp", ignore_errors=True)
        env.barrier()
        return cls(out, cfg, env, resume_from)

    # ------------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, step: int, models: dict[str, nn.Module], states: dict[str, object],
                        position: tuple[int, int], extra: dict | None = None) -> Path:
        """Write ``checkpoints/step-NNNNNN`` (collective: every rank must call it at the same step).

        Args:
            step: optimizer steps done.
            models: name → model (saved with ``save_pretrained`` into ``name/``).
            states: name → object with ``state_dict()`` (optimizers, schedulers, scaler), into
                ``training_state.pt``.
            position: this rank's data-stream position.
            extra: more JSON-ready values for ``trainer_state.json``.
        """
        env = self.env
        positions = _all_gather(env, list(position))
        rng = {"cpu": torch.get_rng_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        rngs = _all_gather(env, rng)
        final = self.ckpt_root / _step_dir_name(step)
        bad = {name: nonfinite_tensors(m) for name, m in models.items()} if env.is_main else {}
        bad = {k: v for k, v in bad.items() if v}
        if bad:  # never written, so pruning below can never delete the last finite checkpoint
            name, keys = next(iter(bad.items()))
            raise CheckpointError(f"step {step}: {name} holds non-finite weights ({keys[:3]}); not saved",
                                  path=final, fix="resume from the last checkpoint with a lower optim.lr")
        if env.is_main:
            def write(tmp: Path) -> None:
                for name, model in models.items():
                    model.save_pretrained(tmp / name)
                torch.save({k: v.state_dict() for k, v in states.items()}, tmp / "training_state.pt")
                torch.save({f"rank{r}": s for r, s in enumerate(rngs)}, tmp / "rng_states.pt")
                save_config(self.cfg, tmp / "config.yaml")
                state = {"step": step, "positions": positions, "world_size": env.world_size,
                         "num_workers": self.cfg.data.num_workers, "seed": self.cfg.seed, "version": __version__,
                         "models": sorted(models), "time": round(time.time() - self.t0, 2), **(extra or {})}
                (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, sort_keys=True))

            ckpts = self.checkpoints(self.out)
            write_checkpoint_dir(self.ckpt_root, final.name, write, lambda: estimate_bytes(
                [m.state_dict() for m in models.values()] + [v.state_dict() for v in states.values()],
                ckpts[-1] if ckpts else None))
            keep = self.cfg.keep_checkpoints
            if keep > 0:
                for old in self.checkpoints(self.out)[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)
        env.barrier()
        return final

    def load_checkpoint(self, models: dict[str, nn.Module], states: dict[str, object]) -> tuple[int, tuple | None]:
        """Restore models, optimizer/scheduler/scaler states and RNG states from :attr:`resume_from`.

        Returns:
            ``(step, position)``: the step to continue from and this rank's data position (``None`` when the
            world size or worker count changed: the data stream then restarts at the next epoch, with a warning).
        """
        ckpt = self.resume_from
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            for name, model in models.items():
                load_model_weights(model, ckpt / name)
            blobs = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=True)
            for name, obj in states.items():
                obj.load_state_dict(blobs[name])
            rngs = torch.load(ckpt / "rng_states.pt", map_location="cpu", weights_only=True)
        except (OSError, KeyError, RuntimeError, ValueError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot restore the checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                                  path=ckpt, fix="resume from an older checkpoint (--resume checkpoints/step-NNNNNN)"
                                  ) from None
        env = self.env
        same = state.get("world_size") == env.world_size and state.get("num_workers") == self.cfg.data.num_workers
        mine = rngs.get(f"rank{env.rank}") if same else None
        if mine is not None:
            torch.set_rng_state(mine["cpu"])
            if env.device.type == "cuda" and "cuda" in mine:
                torch.cuda.set_rng_state(mine["cuda"], env.device)
        position = None
        if same:
            position = tuple(state["positions"][env.rank])
        else:
            epoch = max(p[0] for p in state["positions"]) + 1
            position = (epoch, 0)
            if env.is_main:
                warnings.warn(f"resuming with {env.world_size} process(es) x {self.cfg.data.num_workers} worker(s) "
                              f"instead of {state.get('world_size')} x {state.get('num_workers')}: the data stream "
                              f"restarts at epoch {epoch}; training continues, but not as an exact continuation",
                              RuntimeWarning, stacklevel=2)
        return int(state["step"]), position

    # ----------------------------------------------------------------------------------------- finish

    def finish(self, step: int, models: dict[str, nn.Module], summary: dict) -> dict:
        """Save the final models to ``OUT/<name>/`` and write ``train_summary.json`` (collective).

        The summary gets each rank's :func:`model_digest` of every model (``rank_digests``): identical digests
        show that all ranks ended with bitwise-identical weights.
        """
        env = self.env
        digests = _all_gather(env, {name: model_digest(m) for name, m in models.items()})
        memory = _all_gather(env, peak_memory(env))
        out = dict(summary)
        if env.is_main:
            with storage_errors(self.out, "the final models", lambda: estimate_bytes(
                    [m.state_dict() for m in models.values()])):
                for name, model in models.items():
                    model.save_pretrained(self.out / name)
            out.update(step=step, world_size=env.world_size, device=str(env.device),
                       seconds=round(time.time() - self.t0, 2), rank_digests=digests, peak_memory=memory,
                       ranks_identical=all(d == digests[0] for d in digests), version=__version__)
            with atomic_output(self.out / "train_summary.json") as tmp:
                Path(tmp).write_text(json.dumps(out, indent=1, sort_keys=True))
        env.barrier()
        return out
