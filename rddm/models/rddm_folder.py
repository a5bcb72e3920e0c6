"""An RDDM's folder: ``rddm_config.json`` + the CMB LoRA groups, the base weights referenced, not copied (see
``docs/rddm.md``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import lora as _lora
from ..errors import WeightsError
from ..schedule import SD_FOLDER_FIX as _SD_FIX
from .rddm_config import CONFIG_NAME, FORMAT_VERSION, RVAE_LORA_DIR, UNET_LORA_DIR, RDDMConfig

if TYPE_CHECKING:
    from .rddm import RDDM

__all__ = ["RDDMFolderMixin"]


def _abs(p: str | os.PathLike | None) -> str | None:
    return None if p is None else str(Path(p).expanduser().resolve())


class RDDMFolderMixin:
    """``save_pretrained``/``from_pretrained``/``read_config``/``load_lora_weights`` of :class:`~rddm.models.rddm.RDDM`.

    Folder layout::

        rddm_config.json   RDDMConfig + the base model folders (sd_model, rvae_model), prediction type, latent scale
        rvae_lora/<GROUP>/ adapter_config.json + adapter_model.safetensors (peft), GROUP = RGGB … or ALL
        unet_lora/<GROUP>/ the same for the UNet
    """

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True) -> Path:
        """Write ``rddm_config.json`` + the CMB groups of the encoder (``rvae_lora/``) and UNet (``unet_lora/``).

        The base weights are referenced (``sd_model``, ``rvae_model``), not copied. Merged groups are saved
        unmerged (peft keeps the LoRA weights), and the folder is replaced atomically group folder by group folder.
        """
        out = Path(save_directory)
        if not is_main_process:
            return out
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        for sub, m in ((RVAE_LORA_DIR, self.rvae), (UNET_LORA_DIR, self.unet)):
            tmp = out / f"{sub}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            for k in _lora.cmb_groups(m):
                _lora.save_adapter(m, _lora.PREFIX + k, tmp / k)
            shutil.rmtree(out / sub, ignore_errors=True)
            os.replace(tmp, out / sub)
        meta = {"_class_name": type(self).__name__, "_format_version": FORMAT_VERSION,
                "prediction_type": self.prediction_type, "scaling_factor": float(self.rvae.config.scaling_factor),
                **self.config.to_dict()}
        tmp = out / f"{CONFIG_NAME}.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, out / CONFIG_NAME)
        return out

    @staticmethod
    def read_config(path: str | os.PathLike) -> tuple[RDDMConfig, dict]:
        """``(config, extra)`` of an RDDM folder (``extra``: ``prediction_type``, ``scaling_factor`` saved with it).

        Raises:
            WeightsError: not an RDDM folder.
            ConfigError: an invalid config file.
        """
        root = Path(path)
        fix = "pass the folder written by RDDM.save_pretrained (OUT/rddm of `rddm train`)"
        if root.is_dir() and not (root / CONFIG_NAME).is_file() and (root / "rddm" / CONFIG_NAME).is_file():
            root = root / "rddm"
        f = root / CONFIG_NAME
        if not root.is_dir():
            raise WeightsError("no such RDDM folder", path=root, fix=fix)
        if not f.is_file():
            raise WeightsError(f"not an RDDM folder: no {CONFIG_NAME}", path=root, fix=fix)
        try:
            d = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise WeightsError(f"unreadable {CONFIG_NAME} ({e})", path=f, fix=fix) from None
        if not isinstance(d, dict) or d.get("_class_name") != "RDDM":
            raise WeightsError(f"{CONFIG_NAME} does not describe an RDDM", path=f, fix=fix)
        if d.get("_format_version", 0) > FORMAT_VERSION:
            raise WeightsError(f"written by a newer rddm (format {d['_format_version']})", path=f,
                               fix="update the rddm package")
        extra = {k: d.pop(k) for k in ("prediction_type", "scaling_factor") if k in d}
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        return RDDMConfig.from_dict(d, path=f), extra

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, sd_model: str | os.PathLike | None = None,
                        rvae_model: str | os.PathLike | None = None, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None) -> RDDM:
        """Load a saved RDDM folder (or a ``rddm train`` output folder, its ``rddm/``): rebuild the base from the
        referenced SD/RVAE folders (``sd_model``/``rvae_model`` override them) and load the CMB groups.

        The result is in eval mode; outputs are bit-identical to the saved model's (same base folders).

        Raises:
            WeightsError: a missing folder or file, or groups that do not fit the base (named, with the fix).
        """
        root = Path(path)
        if not (root / CONFIG_NAME).is_file() and (root / "rddm" / CONFIG_NAME).is_file():
            root = root / "rddm"
        config, extra = cls.read_config(root)
        changes = {}
        if sd_model is not None:
            changes["sd_model"] = _abs(sd_model)
        if rvae_model is not None:
            changes["rvae_model"] = _abs(rvae_model)
        config = dataclasses.replace(config, **changes)
        for key, flag in (("sd_model", "--sd-model"), ("rvae_model", "--rvae")):
            v = getattr(config, key)
            if v is not None and not Path(v).is_dir() and key not in changes:
                raise WeightsError(f"the base model folder {v} recorded in {CONFIG_NAME} does not exist here",
                                   path=root / CONFIG_NAME, fix=f"pass {key}= ({flag}) with its location on this "
                                   "machine")
        model = cls._build(config, add_lora=False)
        sf = extra.get("scaling_factor")
        if sf is not None and not math.isclose(sf, float(model.rvae.config.scaling_factor), rel_tol=1e-6):
            raise WeightsError(f"the RVAE has latent scale {model.rvae.config.scaling_factor}, the RDDM was trained "
                               f"with {sf}", path=config.rvae_model or config.sd_model,
                               fix="pass the RVAE folder the RDDM was trained with (rvae_model= / --rvae)")
        if extra.get("prediction_type", model.prediction_type) != model.prediction_type:
            raise WeightsError(f"the SD scheduler predicts {model.prediction_type}, the RDDM was trained with "
                               f"{extra['prediction_type']}", path=config.sd_model, fix=_SD_FIX)
        for sub, m in ((RVAE_LORA_DIR, model.rvae), (UNET_LORA_DIR, model.unet)):
            folder = root / sub
            if not folder.is_dir():
                raise WeightsError(f"incomplete RDDM folder: {sub}/ is missing", path=root,
                                   fix="save the model again with save_pretrained")
            loaded = sorted(str(getattr(p, "value", p)) for p in _lora.load_cmb_lora(m, folder))
            if loaded != sorted(config.groups):
                raise WeightsError(f"{sub}/ holds groups {loaded}, the config says {sorted(config.groups)}",
                                   path=folder, fix="save the model again with save_pretrained")
        model.eval()
        if device is not None or torch_dtype is not None:
            model.to(device=device, dtype=torch_dtype)
        return model

    def load_lora_weights(self, path: str | os.PathLike) -> None:
        """Copy the CMB groups of a saved RDDM folder into this model's groups in place (exact resume).

        Raises:
            WeightsError: not a matching RDDM folder (other groups, ranks or targets).
        """
        root = Path(path)
        config, _ = self.read_config(root)
        if config.groups != self.config.groups or config.lora_rank != self.config.lora_rank:
            raise WeightsError(f"the saved RDDM has groups {config.groups} of rank {config.lora_rank}, this one "
                               f"{self.config.groups} of rank {self.config.lora_rank}", path=root,
                               fix="resume with the same model config")
        root = root if (root / CONFIG_NAME).is_file() else root / "rddm"
        was = self._merged
        self.unmerge_lora()
        _lora.load_cmb_weights(self.rvae, root / RVAE_LORA_DIR)
        _lora.load_cmb_weights(self.unet, root / UNET_LORA_DIR)
        if was is not None:
            self._merge(was)

    #: The hook :func:`rddm.train.core.load_model_weights` calls when resuming a checkpoint.
    load_checkpoint_weights = load_lora_weights
