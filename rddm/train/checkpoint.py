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
from .distributed import DistEnv, _all_gather, main_then_broadcast
from .logger import peak_memory
from .val_config import ValidationConfig
from .streams import StreamPosition

#: Config keys that may change when a run is resumed (everything else must match the checkpoint's config).
MUTABLE_KEYS = ("max_steps", "log_every", "save_every", "keep_checkpoints", "tensorboard", "data.num_workers",
                "data.shards", "data.handler", "data.verify", "data.onthefly.sources")
# issue 16: the validation section may change on resume (it never changes the trained weights)
MUTABLE_KEYS += ("validation", *(f"validation.{f}" for f in ValidationConfig.__dataclass_fields__))
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


def pack_readers(readers: dict | None) -> dict | None:
    """A :class:`~rddm.train.streams.StreamPosition`'s reader states for ``trainer_state.json``: each shuffle
    buffer's ``[[k, o], ...]`` as one ``"k:o k:o ..."`` string (a buffer holds ``data.shuffle`` places)."""
    if not readers:
        return readers
    workers = {w: dict(st, buf=" ".join(f"{k}:{o}" for k, o in st["buf"])) if "buf" in st else dict(st)
               for w, st in readers["workers"].items()}
    return {"last": readers["last"], "workers": workers}


def unpack_readers(readers: dict | None) -> dict | None:
    """The inverse of :func:`pack_readers`."""
    if not readers:
        return None
    workers = {w: dict(st, buf=[[int(v) for v in loc.split(":")] for loc in st["buf"].split()])
               if isinstance(st.get("buf"), str) else dict(st) for w, st in readers["workers"].items()}
    return {"last": readers["last"], "workers": workers}


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
        # a kill while a step was saved again: put the set-aside copy back (rank 0; its failure fails every rank)
        main_then_broadcast(env, lambda: recover_checkpoints(out / "checkpoints"), "recovering the checkpoints")
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
            position: this rank's data-stream position (``stream.position``; a
                :class:`~rddm.train.streams.StreamPosition` also saves its reader states, so that resuming seeks).
            extra: more JSON-ready values for ``trainer_state.json``.

        Raises:
            CheckpointError: on every rank, when rank 0 refused to save (non-finite weights) or could not write
                (the error names the folder and the fix); no rank is left waiting.
        """
        env = self.env
        positions = _all_gather(env, [int(v) for v in position[:2]])
        readers = _all_gather(env, getattr(position, "readers", None))
        rng = {"cpu": torch.get_rng_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        rngs = _all_gather(env, rng)
        final = self.ckpt_root / _step_dir_name(step)

        def save() -> None:  # rank 0; its outcome is broadcast, so that a failure fails every rank
            bad = {name: nonfinite_tensors(m) for name, m in models.items()}
            bad = {k: v for k, v in bad.items() if v}
            if bad:  # never written, so pruning below can never delete the last finite checkpoint
                name, keys = next(iter(bad.items()))
                raise CheckpointError(f"step {step}: {name} holds non-finite weights ({keys[:3]}); not saved",
                                      path=final, fix="resume from the last checkpoint with a lower optim.lr")

            def write(tmp: Path) -> None:
                for name, model in models.items():
                    model.save_pretrained(tmp / name)
                torch.save({k: v.state_dict() for k, v in states.items()}, tmp / "training_state.pt")
                torch.save({f"rank{r}": s for r, s in enumerate(rngs)}, tmp / "rng_states.pt")
                save_config(self.cfg, tmp / "config.yaml")
                state = {"step": step, "positions": positions, "readers": [pack_readers(r) for r in readers],
                         "world_size": env.world_size,
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

        main_then_broadcast(env, save, f"saving checkpoint {final.name}")
        return final

    def load_checkpoint(self, models: dict[str, nn.Module], states: dict[str, object]) -> tuple[int, tuple | None]:
        """Restore models, optimizer/scheduler/scaler states and RNG states from :attr:`resume_from`.

        States whose object has ``checkpoint_optional = True`` (the non-finite guard's counts) are restored when the
        checkpoint holds them (an older checkpoint may not).

        Returns:
            ``(step, position)``: the step to continue from and this rank's data position (a
            :class:`~rddm.train.streams.StreamPosition`: with the shard readers' states, the stream seeks there).
            When ``data.num_workers`` changed (shard training), the stream restarts at the next epoch, with a
            warning: the readers' shares of the shards differ.

        Raises:
            ConfigError: the world size differs from the checkpoint's (each rank's share of the data, and with
                ``global_batch_size`` its batch, depend on it: the run cannot continue exactly).
            CheckpointError: unreadable or unfitting files.
        """
        ckpt = self.resume_from
        env = self.env
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot restore the checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                                  path=ckpt, fix="resume from an older checkpoint (--resume checkpoints/step-NNNNNN)"
                                  ) from None
        saved_world = state.get("world_size")
        if saved_world != env.world_size:
            raise ConfigError(f"the checkpoint was written by {saved_world} process(es) and this run has "
                              f"{env.world_size}: each rank's share of the data stream (and its batch) depends on the "
                              "number of processes, so the run cannot continue exactly",
                              path=ckpt / "trainer_state.json",
                              fix=f"resume with {saved_world} process(es) (torchrun --nproc_per_node {saved_world} "
                                  "on one node), or start a new run in a new --out")
        try:
            for name, model in models.items():
                load_model_weights(model, ckpt / name)
            blobs = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=True)
            for name, obj in states.items():
                if name not in blobs and getattr(obj, "checkpoint_optional", False):
                    continue
                obj.load_state_dict(blobs[name])
            rngs = torch.load(ckpt / "rng_states.pt", map_location="cpu", weights_only=True)
        except (OSError, KeyError, RuntimeError, ValueError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot restore the checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                                  path=ckpt, fix="resume from an older checkpoint (--resume checkpoints/step-NNNNNN)"
                                  ) from None
        # on-the-fly batches do not depend on the loader's workers; the shard readers' shares do
        same = self.cfg.data.onthefly is not None or state.get("num_workers") == self.cfg.data.num_workers
        mine = rngs.get(f"rank{env.rank}")
        if mine is not None:
            torch.set_rng_state(mine["cpu"])
            if env.device.type == "cuda" and "cuda" in mine:
                torch.cuda.set_rng_state(mine["cuda"], env.device)
        position = None
        if same:
            readers = (state.get("readers") or [None] * env.world_size)[env.rank]
            position = StreamPosition(*state["positions"][env.rank], readers=unpack_readers(readers))
        else:
            epoch = max(p[0] for p in state["positions"]) + 1
            position = (epoch, 0)
            if env.is_main:
                warnings.warn(f"resuming with {self.cfg.data.num_workers} data worker(s) per process instead of "
                              f"{state.get('num_workers')}: the data stream "
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

        def save() -> None:  # rank 0; a failure fails every rank
            with storage_errors(self.out, "the final models", lambda: estimate_bytes(
                    [m.state_dict() for m in models.values()])):
                for name, model in models.items():
                    model.save_pretrained(self.out / name)
            out.update(step=step, world_size=env.world_size, device=str(env.device),
                       seconds=round(time.time() - self.t0, 2), rank_digests=digests, peak_memory=memory,
                       ranks_identical=all(d == digests[0] for d in digests), version=__version__)
            with atomic_output(self.out / "train_summary.json") as tmp:
                Path(tmp).write_text(json.dumps(out, indent=1, sort_keys=True))

        main_then_broadcast(env, save, "saving the final models")
        return out
