"""FLOP counting that does not depend on which attention kernel torch dispatches to. See ``docs/rddm.md``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "sdpa_math", "sdpa_flops"]


def sdpa_math(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` written out (no dropout: counting runs in eval mode).

    Shapes as torch's: query ``(..., L, E)``, key ``(..., S, E)``, value ``(..., S, Ev)`` → ``(..., L, Ev)``."""
    if dropout_p:
        raise ValueError("sdpa_math counts inference passes only: dropout_p must be 0")
    if enable_gqa and query.shape[-3] != key.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.matmul(scores.softmax(-1), value)


def sdpa_flops(query_shape: tuple[int, ...], key_shape: tuple[int, ...], value_shape: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one attention call: ``q·kᵀ`` plus ``attn·v``."""
    *batch, q_len, dim = query_shape
    kv_len, v_dim = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * q_len * kv_len * (dim + v_dim)


class _SDPAAsMath(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            return sdpa_math(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Total FLOPs of ``fn(*args, **kwargs)`` (run once under ``no_grad``), attention included on every torch."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter, _SDPAAsMath():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
