"""The FLOP counter against hand counts: attention is counted whatever kernel torch dispatches to."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from rddm.models.flops import count_flops, sdpa_flops, sdpa_math


def test_sdpa_math_equals_torch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    mask = torch.randn(5, 7, generator=g, dtype=torch.float64)
    bool_mask = torch.rand(5, 7, generator=g) > 0.3
    bool_mask[:, 0] = True
    for kw in ({}, {"scale": 0.3}, {"attn_mask": mask}, {"attn_mask": bool_mask}):
        torch.testing.assert_close(sdpa_math(q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw))
    qc = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sdpa_math(qc, k, v, is_causal=True),
                               F.scaled_dot_product_attention(qc, k, v, is_causal=True))


def test_bare_sdpa_hand_count():
    q, k, v = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 32, 8), torch.randn(2, 4, 32, 6)
    hand = 2 * 2 * 4 * 16 * 32 * 8 + 2 * 2 * 4 * 16 * 32 * 6  # q·kᵀ, then attn·v
    assert sdpa_flops(q.shape, k.shape, v.shape) == hand
    assert count_flops(F.scaled_dot_product_attention, q, k, v) == hand


@pytest.mark.parametrize("tokens,context", [(16, None), (16, 7)])
def test_diffusers_attention_block_hand_count(tokens, context):
    """A diffusers ``Attention`` (the UNet's and VAE's block) with SDPA processor: 4 projections + attention."""
    torch.manual_seed(0)
    dim, heads, dim_head, cross = 8, 2, 4, 12
    attn = Attention(query_dim=dim, heads=heads, dim_head=dim_head,
                     cross_attention_dim=cross if context else None).eval()
    x = torch.randn(1, tokens, dim)
    enc = torch.randn(1, context, cross) if context else None
    s = context or tokens
    kv_in = cross if context else dim
    inner = heads * dim_head
    hand = (2 * tokens * dim * inner            # to_q
            + 2 * 2 * s * kv_in * inner         # to_k, to_v
            + 2 * tokens * inner * dim          # to_out[0]
            + 4 * heads * tokens * s * dim_head)  # q·kᵀ and attn·v
    assert count_flops(attn, x, encoder_hidden_states=enc) == hand


def test_conv_hand_count():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    assert count_flops(conv, torch.randn(2, 3, 10, 12)) == 2 * 2 * 5 * 3 * 9 * 10 * 12


def test_attention_share_grows_quadratically():
    """The UNet's self-attention is quadratic in the token count: at 4× the pixels the attention FLOPs grow 16×."""
    q = torch.randn(1, 2, 64, 4)
    q4 = torch.randn(1, 2, 256, 4)
    a, b = count_flops(F.scaled_dot_product_attention, q, q, q), count_flops(F.scaled_dot_product_attention, q4, q4, q4)
    assert b == 16 * a and a == 4 * 2 * 64 * 64 * 4


def test_rddm_count_same_on_cpu_and_meta():
    """The count of the tiny RDDM on real CPU tensors equals the shape-only count on the meta device (torch picks
    different attention kernels on the two: a counter that missed one would disagree)."""
    from rddm.restore.memory import build_model

    cpu = build_model("tiny")
    with torch.device("meta"):
        meta = build_model("tiny")
    assert cpu.flops(32, 32) == meta.flops(32, 32) > 0
