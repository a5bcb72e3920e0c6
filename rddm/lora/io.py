"""Merging CMB LoRA groups into the weights and saving/loading them in peft's format (see ``docs/rddm.md``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from rawsynth.mns import Pattern

from ..errors import ConfigError, WeightsError
from .groups import ALL, PREFIX, _add_adapter, _tuner_layers, cmb_groups

__all__ = ["merged_adapters", "unmerge_adapters", "merge_adapter", "save_adapter", "load_adapter", "save_cmb_lora",
           "load_cmb_lora", "load_cmb_weights"]


# ---------------------------------------------------------------------------------------------- merging


def merged_adapters(model: nn.Module) -> list[str]:
    """The adapters currently merged into ``model``'s weights."""
    names = []
    for m in _tuner_layers(model):
        for n in getattr(m, "merged_adapters", []):
            if n not in names:
                names.append(n)
    return names


def unmerge_adapters(model: nn.Module) -> None:
    """Undo every merge (the model's own weights are restored up to float rounding)."""
    for m in _tuner_layers(model):
        if m.merged:
            m.unmerge()


def merge_adapter(model: nn.Module, name: str) -> None:
    """Fold adapter ``name`` into the weights of ``model`` (inference: no LoRA cost per layer); any other merged
    adapter is unmerged first. While merged, the model computes ``W + BA`` whatever adapter is active.

    Raises:
        ConfigError: no adapter ``name``.
    """
    if name not in (getattr(model, "peft_config", None) or {}):
        raise ConfigError(f"the model has no LoRA adapter {name!r}")
    if merged_adapters(model) == [name]:
        return
    unmerge_adapters(model)
    for m in _tuner_layers(model):
        if name in m.lora_A or name in getattr(m, "lora_embedding_A", {}):
            m.merge(adapter_names=[name])


# ---------------------------------------------------------------------------------------------- save/load


def save_adapter(model: nn.Module, name: str, folder: str | os.PathLike) -> Path:
    """Write adapter ``name`` to ``folder`` (peft's ``adapter_config.json`` + ``adapter_model.safetensors``)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    model.peft_config[name].save_pretrained(str(d))
    sd = get_peft_model_state_dict(model, adapter_name=name)
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(d / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    return d


def _check_fit(model: nn.Module, name: str, sd: dict, unexpected, what: str, path: Path) -> None:
    expected = {k for k in model.state_dict() if f".{name}." in k}
    got = {k.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}.") for k in sd}
    missing = sorted(expected - got)
    unexpected = sorted(set(unexpected or []) | (got - expected))
    if unexpected or missing:
        raise WeightsError(f"{what} does not fit the model (unexpected {unexpected[:3]}, missing {missing[:3]})",
                           path=path, fix="load it into the same base model (same SD/RVAE folder) it was trained on")


def load_adapter(model: nn.Module, name: str, folder: str | os.PathLike, add: bool = True) -> str:
    """Load an adapter saved by :func:`save_adapter` into ``model`` as ``name``.

    Args:
        add: add the adapter (from its ``adapter_config.json``); else copy the weights into the existing adapter
            ``name`` (exact resume: the optimizer keeps pointing at the same parameters).

    Raises:
        WeightsError: missing files, or weights that do not fit the model.
    """
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    d = Path(folder)
    cfg_file, weights = d / "adapter_config.json", d / "adapter_model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise WeightsError("incomplete LoRA group: need adapter_config.json and adapter_model.safetensors",
                           path=d, fix="save the model again with save_pretrained")
    from safetensors import SafetensorError

    try:
        sd = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise WeightsError(f"unreadable LoRA weights ({type(e).__name__}: {e})", path=weights,
                           fix="save the model again with save_pretrained") from None
    if add:
        _add_adapter(model, LoraConfig.from_pretrained(str(d)), name)
        _check_fit(model, name, sd, [], f"LoRA group {d.name}", weights)
        result = set_peft_model_state_dict(model, sd, adapter_name=name)
        _check_fit(model, name, sd, getattr(result, "unexpected_keys", []), f"LoRA group {d.name}", weights)
        return name
    if name not in (getattr(model, "peft_config", None) or {}):
        raise WeightsError(f"the model has no LoRA adapter {name!r} to load {d.name} into", path=d)
    _check_fit(model, name, sd, [], f"LoRA group {d.name}", weights)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in sd.items():
            key = k.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}.")
            p = params[key]
            if p.shape != v.shape:
                raise WeightsError(f"LoRA weight {k} has shape {tuple(v.shape)}, the model {tuple(p.shape)}",
                                   path=weights, fix="load it into the model it was saved from")
            p.copy_(v)
    return name


def save_cmb_lora(model: nn.Module, folder: str | os.PathLike) -> list[Path]:
    """Write every CMB group to ``folder/<PATTERN>/`` (``folder/ALL/`` for the all-in-one group) with
    :func:`save_adapter`. Returns the group folders."""
    return [save_adapter(model, PREFIX + k, Path(folder) / k) for k in cmb_groups(model)]


def _group_dirs(root: Path) -> list[tuple[str, Path]]:
    if not root.is_dir():
        raise WeightsError("no such CMB LoRA folder", path=root, fix="save the model again with save_pretrained")
    out = []
    for d in sorted(x for x in root.iterdir() if x.is_dir()):
        if d.name != ALL and d.name not in {p.value for p in Pattern}:
            raise WeightsError(f"unexpected folder {d.name!r} (CMB groups are named after Bayer patterns)", path=d)
        out.append((d.name, d))
    return out


def load_cmb_lora(model: nn.Module, folder: str | os.PathLike) -> list[Pattern | str]:
    """Add the CMB groups saved in ``folder`` (by :func:`save_cmb_lora`) to ``model`` with their weights.

    Returns:
        The loaded groups' patterns (:data:`ALL` for the all-in-one group), in folder-name order.

    Raises:
        WeightsError: a group folder with missing files, or weights that do not fit the model.
    """
    loaded = []
    for key, d in _group_dirs(Path(folder)):
        load_adapter(model, PREFIX + key, d, add=True)
        loaded.append(ALL if key == ALL else Pattern(key))
    for n, p in model.named_parameters():
        if "lora_" in n and any(f".{PREFIX}{k}." in n for k in cmb_groups(model)):
            p.requires_grad_(True)
    return loaded


def load_cmb_weights(model: nn.Module, folder: str | os.PathLike) -> None:
    """Copy the weights of the CMB groups saved in ``folder`` into ``model``'s existing groups, in place (resume:
    parameters keep their identity, so optimizer states stay attached).

    Raises:
        WeightsError: the saved groups are not exactly the model's groups, or do not fit.
    """
    dirs = _group_dirs(Path(folder))
    if sorted(k for k, _ in dirs) != sorted(cmb_groups(model)):
        raise WeightsError(f"the saved CMB groups {[k for k, _ in dirs]} are not the model's {cmb_groups(model)}",
                           path=folder, fix="load it into a model built with the same patterns and lora_mode")
    for key, d in dirs:
        load_adapter(model, PREFIX + key, d, add=False)
