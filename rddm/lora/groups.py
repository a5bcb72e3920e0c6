"""CMB LoRA groups: names, adding, switching per Bayer pattern, gradient checkpointing that replays the
active group (see ``docs/rddm.md``)."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from rawsynth.mns import Pattern, as_patterns

from ..errors import ConfigError

__all__ = ["PREFIX", "ALL", "ENCODER_TARGETS", "ENCODER_TARGETS_QUANT", "UNET_TARGETS", "CMB_DIR", "adapter_name",
           "add_cmb_lora", "cmb_patterns", "cmb_groups", "cmb_adapter_names", "group_for", "active_cmb",
           "active_adapter", "adapters_disabled", "run_grouped", "add_adapter", "enable_gradient_checkpointing"]

PREFIX = "cmb_"
CMB_DIR = "cmb_lora"
#: Group key of the single shared "All-in-One" group (paper Table 7), adapter ``cmb_ALL``.
ALL = "ALL"
#: Every convolution and attention projection of a diffusers VAE ``Encoder`` (a regex, matched in full).
ENCODER_TARGETS = (r"encoder\.(conv_in|conv_out|.*\.(conv1|conv2|conv_shortcut|conv|to_q|to_k|to_v|to_out\.0))")
#: :data:`ENCODER_TARGETS` plus the VAE's ``quant_conv`` (the 1×1 conv after the encoder), as OSEDiff does.
ENCODER_TARGETS_QUANT = r"quant_conv|" + ENCODER_TARGETS
#: OSEDiff's UNet LoRA targets: every convolution (resnets, down/up samplers, ``conv_in``/``conv_out``), the
#: attention projections, the transformers' ``proj_in``/``proj_out`` and feed-forward layers. Not the time
#: embedding (``time_emb_proj``, ``time_embedding.linear_*``) nor the norms.
UNET_TARGETS = (r"conv_in|conv_out|.*\.(conv|conv1|conv2|conv_shortcut|to_q|to_k|to_v|to_out\.0|proj_in|proj_out"
                r"|ff\.net\.0\.proj|ff\.net\.2)")


def _group_key(pattern: Pattern | str) -> str:
    if isinstance(pattern, str) and pattern == ALL:
        return ALL
    try:
        return Pattern(pattern).value
    except ValueError:
        raise ConfigError(f"unknown Bayer pattern {pattern!r}; use one of {[p.value for p in Pattern]}") from None


def adapter_name(pattern: Pattern | str) -> str:
    """The adapter name of a pattern's LoRA group, ``cmb_<PATTERN>`` (``cmb_ALL`` for :data:`ALL`)."""
    return PREFIX + _group_key(pattern)


_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tuner_layers(model: nn.Module) -> list[nn.Module]:
    """peft's LoRA layers of ``model`` (cached per model until its set of adapters changes)."""

    return _cached(model)[1]


def _cached(model: nn.Module) -> tuple:
    from peft.tuners.tuners_utils import BaseTunerLayer

    key = tuple(getattr(model, "peft_config", None) or {})
    hit = _LAYERS.get(model)
    if hit is None or hit[0] != key:
        mods = list(model.modules())
        hit = (key, [m for m in mods if isinstance(m, BaseTunerLayer)],
               [m for m in mods if hasattr(m, "gradient_checkpointing")])
        _LAYERS[model] = hit
    return hit


def _unsafe_checkpointing(model: nn.Module) -> bool:
    """Gradient checkpointing is on in ``model`` without :func:`enable_gradient_checkpointing`'s replay."""
    return any(getattr(m, "gradient_checkpointing", False)
               and not getattr(getattr(m, "_gradient_checkpointing_func", None), "lora_aware", False)
               for m in _cached(model)[2])


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """diffusers gradient checkpointing (``model.enable_gradient_checkpointing``) that is correct with LoRA groups
    switched per batch part: each checkpointed block records the adapter state it ran with (active adapters,
    adapters disabled or not) and the backward pass recomputes it under that same state (``torch.utils.checkpoint``
    with a ``context_fn``). Plain checkpointing would recompute with whatever group is active at backward time;
    :func:`active_adapter` refuses to run under it with autograd on."""
    import contextlib

    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch.utils.checkpoint import checkpoint

    def func(module, *args):  # (no reference to ``model``: stays right in deep copies)
        if not isinstance(module, nn.Module):  # diffusers passes the block; anything else we could not replay
            raise ConfigError(f"cannot checkpoint {module!r} with its LoRA state: not a torch module")
        layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
        state = (list(layers[0].active_adapters), layers[0].disable_adapters) if layers else None

        @contextmanager
        def replay():
            if state is None:
                yield
                return
            before = (list(layers[0].active_adapters), [m.disable_adapters for m in layers])
            _activate(layers, state[0])
            for m in layers:
                m._disable_adapters = state[1]
            try:
                yield
            finally:
                _activate(layers, before[0])
                for m, d in zip(layers, before[1]):
                    m._disable_adapters = d

        return checkpoint(module.__call__, *args, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), replay()))

    func.lora_aware = True
    model.enable_gradient_checkpointing(gradient_checkpointing_func=func)


def _fast(layers) -> bool:
    # peft's set_adapter/enable_adapters also rewrite every adapter's requires_grad (which we then restore): ~50 ms
    # per switch for SD's 258 LoRA layers. The state they switch is these two attributes; set them directly when
    # the installed peft has them (else fall back to the public methods).
    return all(hasattr(m, "_active_adapter") and hasattr(m, "_disable_adapters") for m in layers)


def _activate(layers, names: list[str]) -> None:
    if _fast(layers):
        for m in layers:
            m._active_adapter = list(names)
    else:  # pragma: no cover - other peft versions
        for m in layers:
            m.set_adapter(names)


def cmb_groups(model: nn.Module) -> list[str]:
    """The group keys of every CMB group in ``model`` (pattern names and/or :data:`ALL`), in the order added."""
    cfg = getattr(model, "peft_config", None) or {}
    return [n[len(PREFIX):] for n in cfg if n.startswith(PREFIX)]


def cmb_patterns(model: nn.Module) -> list[Pattern]:
    """The patterns that have a CMB LoRA group of their own in ``model`` (in the order they were added)."""
    return [Pattern(k) for k in cmb_groups(model) if k != ALL]


def cmb_adapter_names(model: nn.Module) -> list[str]:
    """The adapter names of every CMB group of ``model`` (``cmb_RGGB``, ..., ``cmb_ALL``)."""
    return [PREFIX + k for k in cmb_groups(model)]


def group_for(model: nn.Module, pattern: Pattern | str) -> str:
    """The adapter that processes ``pattern``: its own group, else the all-in-one group ``cmb_ALL``.

    Raises:
        ConfigError: the model has neither.
    """
    key = _group_key(pattern)
    groups = cmb_groups(model)
    if key in groups:
        return PREFIX + key
    if ALL in groups:
        return PREFIX + ALL
    raise ConfigError(f"the model has no CMB LoRA group for {key} (it has {groups}); add it with add_cmb_lora")


def peft_init(init: bool | str) -> bool | str:
    """peft's ``init_lora_weights`` of a config value: ``kaiming`` → ``True`` (peft's default), ``gaussian`` (OSEDiff,
    ``A ~ N(0, 1/rank)``) as is; a bool passes through."""
    return True if init == "kaiming" else init


def add_adapter(model: nn.Module, name: str, rank: int = 4, alpha: float | None = None,
                target_modules: str | list[str] = ENCODER_TARGETS, init_lora_weights: bool | str = True) -> str:
    """Add one trainable LoRA adapter ``name`` to a diffusers model (``PeftAdapterMixin``); base weights frozen.

    Raises:
        ConfigError: a bad rank, or an adapter of that name already exists.
    """
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be an int >= 1, got {rank!r}")
    if name in (getattr(model, "peft_config", None) or {}):
        raise ConfigError(f"the model already has a LoRA adapter {name!r}")
    cfg = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=target_modules,
                     init_lora_weights=peft_init(init_lora_weights))
    flags = _lora_flags(model)
    _add_adapter(model, cfg, name)
    _restore(flags)  # diffusers' add_adapter makes the new adapter the only trainable one: keep the others as were
    for n, p in model.named_parameters():
        if f".{name}." in n:
            p.requires_grad_(True)
    return name


def add_cmb_lora(model: nn.Module, patterns: Iterable[Pattern | str] = tuple(Pattern), rank: int = 4,
                 alpha: float | None = None, target_modules: str | list[str] = ENCODER_TARGETS,
                 init_lora_weights: bool | str = True) -> list[str]:
    """Add one LoRA adapter per Bayer pattern to a diffusers model (``PeftAdapterMixin``).

    Args:
        model: e.g. an :class:`~rddm.models.rvae.RVAE` or a ``UNet2DConditionModel``.
        patterns: the patterns to add groups for (default all four); :data:`ALL` adds the shared all-in-one group.
        rank: LoRA rank (the paper: 4).
        alpha: LoRA alpha (default ``rank``, i.e. scale 1).
        target_modules: peft ``target_modules`` (default: every conv/attention layer of the encoder;
            :data:`UNET_TARGETS` for a UNet).
        init_lora_weights: peft's initialisation (``True``: B = 0, so a new group does not change the output).

    Returns:
        The adapter names added. Every CMB adapter is left trainable, the model's own weights frozen.

    Raises:
        ConfigError: a pattern that already has a group, or a bad rank.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be an int >= 1, got {rank!r}")
    names = []
    existing = set(getattr(model, "peft_config", None) or {})
    for p in patterns:
        name = adapter_name(p)
        if name in existing or name in names:
            raise ConfigError(f"the model already has a CMB LoRA group for {_group_key(p)}")
        names.append(name)
    for name in names:
        add_adapter(model, name, rank, alpha, target_modules, init_lora_weights)
    return names


def _add_adapter(model: nn.Module, cfg, name: str) -> None:
    with warnings.catch_warnings():  # peft warns on every adapter after the first: several are the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        model.add_adapter(cfg, adapter_name=name)


def _lora_flags(model: nn.Module) -> list[tuple[torch.nn.Parameter, bool]]:
    return [(p, p.requires_grad) for n, p in model.named_parameters() if "lora_" in n]


def _restore(flags) -> None:
    for p, f in flags:
        p.requires_grad_(f)


@contextmanager
def active_adapter(model: nn.Module, name: str) -> Iterator[None]:
    """Make adapter ``name`` the only active adapter inside the ``with`` block.

    Unlike peft's ``set_adapter`` it leaves every adapter's ``requires_grad`` as it was, so all groups can train
    in one step (each on its own samples) and frozen groups stay frozen.

    Raises:
        ConfigError: the model has no adapter ``name``.
    """
    if name not in (getattr(model, "peft_config", None) or {}):
        raise ConfigError(f"the model has no LoRA adapter {name!r}")
    if torch.is_grad_enabled() and _unsafe_checkpointing(model):
        # checkpointed blocks are recomputed during backward, after this block has switched the adapter back:
        # their gradients would silently come from another group
        raise ConfigError(f"{type(model).__name__} has plain gradient checkpointing on, which recomputes blocks "
                          "with whatever LoRA group is active at backward time", fix="enable it with "
                          "rddm.lora.enable_gradient_checkpointing(model) (RDDM.enable_gradient_checkpointing())")
    layers = _tuner_layers(model)
    previous = list(layers[0].active_adapters) if layers else []
    flags = None if _fast(layers) else _lora_flags(model)
    _activate(layers, [name])
    if flags is not None:  # pragma: no cover - other peft versions
        _restore(flags)
    try:
        yield
    finally:
        _activate(layers, previous)
        if flags is not None:  # pragma: no cover
            _restore(flags)


@contextmanager
def active_cmb(model: nn.Module, pattern: Pattern | str) -> Iterator[None]:
    """Make ``pattern``'s LoRA group (see :func:`group_for`) the only active adapter inside the ``with`` block.

    ``requires_grad`` flags are left as they were (see :func:`active_adapter`).

    Raises:
        ConfigError: the model has no group for ``pattern``.
    """
    with active_adapter(model, group_for(model, pattern)):
        yield


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the model without any adapter inside the ``with`` block (``requires_grad`` flags untouched).

    A merged adapter is unmerged first (peft does so when adapters are disabled), so the block really runs the
    model's own weights.
    """
    layers = _tuner_layers(model)
    if not layers:
        yield
        return
    fast = _fast(layers)
    flags = None if fast else _lora_flags(model)
    previous = [m.disable_adapters for m in layers]
    for m in layers:
        if m.merged:
            m.unmerge()
        if fast:
            m._disable_adapters = True
        else:  # pragma: no cover - other peft versions
            m.enable_adapters(False)
    try:
        yield
    finally:
        for m, was in zip(layers, previous):
            if fast:
                m._disable_adapters = was
            else:  # pragma: no cover
                m.enable_adapters(not was)
        if flags is not None:  # pragma: no cover
            _restore(flags)


def run_grouped(model: nn.Module, patterns: Pattern | str | Sequence[Pattern | str],
                fn: Callable[..., torch.Tensor], *tensors: torch.Tensor,
                select: Callable[[nn.Module, str], object] | None = None) -> torch.Tensor:
    """``fn(*tensors)`` with each sample processed by its pattern's CMB group, results in the input order.

    The batch is split by adapter (:func:`group_for`: in all-in-one mode the whole batch is one group), each part
    runs once with its adapter active, and the parts are concatenated and put back in the input order.

    Args:
        model: the model holding the CMB groups.
        patterns: one pattern or one per sample.
        fn: maps batch-first tensors to a batch-first tensor.
        *tensors: batch-first tensors of the same batch size.
        select: context-manager factory ``select(model, adapter_name)`` (default :func:`active_adapter`), e.g. to
            merge the group instead of activating it.

    Raises:
        ConfigError: a sample's pattern has no group.
    """
    pats = as_patterns(patterns, tensors[0].shape[0], "patterns")
    names = [group_for(model, p) for p in pats]
    select = select or active_adapter
    order = list(dict.fromkeys(names))
    if len(order) == 1:
        with select(model, order[0]):
            return fn(*tensors)
    parts, index = [], []
    for name in order:
        idx = [i for i, n in enumerate(names) if n == name]
        sel = torch.tensor(idx, device=tensors[0].device)
        with select(model, name):
            parts.append(fn(*(t.index_select(0, sel) for t in tensors)))
        index += idx
    out = torch.cat(parts)
    return out[torch.argsort(torch.tensor(index, device=out.device))]
