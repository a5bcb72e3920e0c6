"""CMB LoRA — configurable multi-Bayer LoRA (paper §3.2): one independent LoRA group per Bayer pattern.

Each group is a peft LoRA adapter named ``cmb_<PATTERN>`` (e.g. ``cmb_RGGB``) injected into a diffusers model
(the RVAE encoder here; the UNet in the next stage). A batch is processed pattern by pattern with that
pattern's adapter active (:func:`active_cmb`); mixed batches are split into groups and put back in order by
the caller (see :meth:`rddm.models.rvae.RVAE.encode_raw`).

On disk (:func:`save_cmb_lora`), next to the model's own files::

    cmb_lora/RGGB/adapter_config.json        peft LoraConfig
    cmb_lora/RGGB/adapter_model.safetensors  the adapter's weights (peft key names, no adapter name)
    cmb_lora/BGGR/...

As in peft, adding adapters freezes the model's own weights; the adapters are trainable.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from rawsynth.mns import Pattern

from .errors import ConfigError, WeightsError

__all__ = ["PREFIX", "ENCODER_TARGETS", "adapter_name", "add_cmb_lora", "cmb_patterns", "active_cmb",
           "adapters_disabled", "save_cmb_lora", "load_cmb_lora", "CMB_DIR"]

PREFIX = "cmb_"
CMB_DIR = "cmb_lora"
#: Every convolution and attention projection of a diffusers VAE ``Encoder`` (a regex, matched in full).
ENCODER_TARGETS = (r"encoder\.(conv_in|conv_out|.*\.(conv1|conv2|conv_shortcut|conv|to_q|to_k|to_v|to_out\.0))")


def adapter_name(pattern: Pattern | str) -> str:
    """The adapter name of a pattern's LoRA group, ``cmb_<PATTERN>``."""
    try:
        return PREFIX + Pattern(pattern).value
    except ValueError:
        raise ConfigError(f"unknown Bayer pattern {pattern!r}; use one of {[p.value for p in Pattern]}") from None


def _tuner_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def cmb_patterns(model: nn.Module) -> list[Pattern]:
    """The patterns that have a CMB LoRA group in ``model`` (in the order they were added)."""
    cfg = getattr(model, "peft_config", None) or {}
    return [Pattern(n[len(PREFIX):]) for n in cfg if n.startswith(PREFIX)]


def add_cmb_lora(model: nn.Module, patterns: Iterable[Pattern | str] = tuple(Pattern), rank: int = 4,
                 alpha: float | None = None, target_modules: str | list[str] = ENCODER_TARGETS,
                 init_lora_weights: bool | str = True) -> list[str]:
    """Add one LoRA adapter per Bayer pattern to a diffusers model (``PeftAdapterMixin``).

    Args:
        model: e.g. an :class:`~rddm.models.rvae.RVAE`.
        patterns: the patterns to add groups for (default all four).
        rank: LoRA rank (the paper: 4).
        alpha: LoRA alpha (default ``rank``, i.e. scale 1).
        target_modules: peft ``target_modules`` (default: every conv/attention layer of the encoder).
        init_lora_weights: peft's initialisation (``True``: B = 0, so a new group does not change the output).

    Returns:
        The adapter names added. Every CMB adapter is left trainable, the model's own weights frozen.

    Raises:
        ConfigError: a pattern that already has a group, or a bad rank.
    """
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be an int >= 1, got {rank!r}")
    names = []
    existing = set(getattr(model, "peft_config", None) or {})
    for p in patterns:
        name = adapter_name(p)
        if name in existing or name in names:
            raise ConfigError(f"the model already has a CMB LoRA group for {Pattern(p).value}")
        names.append(name)
    for name in names:
        cfg = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=target_modules,
                         init_lora_weights=init_lora_weights)
        _add_adapter(model, cfg, name)
    for n, p in model.named_parameters():
        if any(f".{a}." in n for a in cmb_adapter_names(model)):
            p.requires_grad_(True)
    return names


def _add_adapter(model: nn.Module, cfg, name: str) -> None:
    with warnings.catch_warnings():  # peft warns on every adapter after the first: several are the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        model.add_adapter(cfg, adapter_name=name)


def cmb_adapter_names(model: nn.Module) -> list[str]:
    return [adapter_name(p) for p in cmb_patterns(model)]


def _lora_flags(model: nn.Module) -> list[tuple[torch.nn.Parameter, bool]]:
    return [(p, p.requires_grad) for n, p in model.named_parameters() if "lora_" in n]


def _restore(flags) -> None:
    for p, f in flags:
        p.requires_grad_(f)


@contextmanager
def active_cmb(model: nn.Module, pattern: Pattern | str) -> Iterator[None]:
    """Make ``pattern``'s LoRA group the only active adapter inside the ``with`` block.

    Unlike peft's ``set_adapter`` it leaves every adapter's ``requires_grad`` as it was, so all groups can train
    in one step (each on its own samples) and frozen groups stay frozen.

    Raises:
        ConfigError: the model has no group for ``pattern``.
    """
    name = adapter_name(pattern)
    if name not in cmb_adapter_names(model):
        raise ConfigError(f"the model has no CMB LoRA group for {Pattern(pattern).value} "
                          f"(it has {[p.value for p in cmb_patterns(model)]}); add it with add_cmb_lora")
    layers = _tuner_layers(model)
    previous = list(layers[0].active_adapters) if layers else []
    flags = _lora_flags(model)
    for m in layers:
        m.set_adapter(name)
    _restore(flags)
    try:
        yield
    finally:
        for m in layers:
            m.set_adapter(previous)
        _restore(flags)


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the model without any adapter inside the ``with`` block (``requires_grad`` flags untouched)."""
    layers = _tuner_layers(model)
    if not layers:
        yield
        return
    flags = _lora_flags(model)
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
        _restore(flags)


def save_cmb_lora(model: nn.Module, folder: str | os.PathLike) -> list[Path]:
    """Write every CMB group to ``folder/<PATTERN>/`` (peft's ``adapter_config.json`` +
    ``adapter_model.safetensors``). Returns the group folders."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = []
    for p in cmb_patterns(model):
        name = adapter_name(p)
        d = Path(folder) / p.value
        d.mkdir(parents=True, exist_ok=True)
        model.peft_config[name].save_pretrained(str(d))
        sd = get_peft_model_state_dict(model, adapter_name=name)
        save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(d / "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        out.append(d)
    return out


def load_cmb_lora(model: nn.Module, folder: str | os.PathLike) -> list[Pattern]:
    """Add the CMB groups saved in ``folder`` (by :func:`save_cmb_lora`) to ``model`` with their weights.

    Raises:
        WeightsError: a group folder with missing files, or weights that do not fit the model.
    """
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    root = Path(folder)
    loaded = []
    for d in sorted(x for x in root.iterdir() if x.is_dir()):
        try:
            pattern = Pattern(d.name)
        except ValueError:
            raise WeightsError(f"unexpected folder {d.name!r} (CMB groups are named after Bayer patterns)",
                               path=d) from None
        cfg_file, weights = d / "adapter_config.json", d / "adapter_model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise WeightsError("incomplete CMB LoRA group: need adapter_config.json and adapter_model.safetensors",
                               path=d, fix="save the model again with save_pretrained")
        cfg = LoraConfig.from_pretrained(str(d))
        name = adapter_name(pattern)
        _add_adapter(model, cfg, name)
        sd = load_file(str(weights))
        result = set_peft_model_state_dict(model, sd, adapter_name=name)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        expected = {k for k in model.state_dict() if f".{name}." in k}
        got = {k.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}.") for k in sd}
        missing = sorted(expected - got)
        if unexpected or missing:
            raise WeightsError(f"CMB LoRA group {pattern.value} does not fit the model (unexpected "
                               f"{unexpected[:3]}, missing {missing[:3]})", path=weights)
        loaded.append(pattern)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
    return loaded
