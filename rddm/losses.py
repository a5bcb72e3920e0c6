"""Losses: the differentiable PTP, dual-domain (linear/RAW and sRGB) reconstruction terms, LPIPS and the GAN.
See ``docs/training.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rawsynth.isp import ISPBatch, ISPParams, process

from .errors import ConfigError, DataError

__all__ = ["isp_from_meta", "to_srgb", "DualDomainLoss", "LossOutput", "hinge_d_loss", "vanilla_d_loss",
           "generator_gan_loss", "adaptive_gan_weight"]


def isp_from_meta(meta: Sequence[dict], device=None, dtype=torch.float32) -> ISPBatch:
    """The batch's ISP parameters (an :class:`~rawsynth.isp.ISPBatch`) from each sample's ``meta["isp"]``.

    Raises:
        DataError: a sample without valid ``isp`` metadata (named by its key).
    """
    params = []
    for m in meta:
        try:
            params.append(ISPParams.from_dict(m["isp"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"sample {m.get('key', '?') if isinstance(m, dict) else '?'} has no valid 'isp' "
                            f"metadata ({e})", fix="use shards written by `rawsynth generate`") from None
    return ISPBatch.from_params(params, device=device, dtype=dtype)


def to_srgb(linear: torch.Tensor, isp: ISPBatch | ISPParams | Sequence[ISPParams]) -> torch.Tensor:
    """The differentiable PTP (``F_PTP``, paper Eq. 3) in float32 (also inside an autocast region): linear camera
    RGB → sRGB in ``[0, 1]``."""
    with torch.autocast(linear.device.type, enabled=False):
        return process(linear.float(), isp)


@dataclass
class LossOutput:
    """What :class:`DualDomainLoss` returns.

    Attributes:
        total: the weighted sum (a scalar tensor).
        terms: each unweighted term (scalar tensors), e.g. ``{"l1_linear": ..., "lpips": ...}``.
        pred_srgb: the prediction through PTP (``None`` if no sRGB term was computed).
        target_srgb: the target through PTP (``None`` likewise).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    pred_srgb: torch.Tensor | None = None
    target_srgb: torch.Tensor | None = None


class DualDomainLoss(nn.Module):
    """Reconstruction loss in linear (RAW) space and in sRGB through the per-sample PTP.

    ``total = l1_linear·L1(x̂, x) + mse_linear·MSE(x̂, x) + l1_srgb·L1(P(x̂), P(x)) + mse_srgb·MSE(P(x̂), P(x))
    + lpips·LPIPS(·, ·)`` with ``P`` the PTP of each sample's ISP parameters and LPIPS taken in ``lpips_domain``.
    Stage 1 of the RVAE uses the L1 terms and LPIPS (Eq. 5); RDDM's stage 2 the MSE terms and LPIPS (Eq. 6).

    Args:
        l1_linear: weight of L1 in linear space (0 skips the term, as for every weight).
        mse_linear: weight of MSE in linear space.
        l1_srgb: weight of L1 in sRGB.
        mse_srgb: weight of MSE in sRGB.
        lpips: weight of LPIPS.
        lpips_model: an :class:`rddm.lpips.LPIPS` (required when ``lpips > 0``).
        lpips_domain: ``"srgb"`` or ``"linear"``.

    Example:
        >>> import torch
        >>> from rawsynth.isp import fixed_isp_params
        >>> loss = DualDomainLoss(l1_linear=1.0, l1_srgb=1.0)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> out = loss(x * 0.9, x, [fixed_isp_params()] * 2)
        >>> sorted(out.terms), bool(out.total > 0)
        (['l1_linear', 'l1_srgb'], True)
    """

    def __init__(self, l1_linear: float = 0.0, mse_linear: float = 0.0, l1_srgb: float = 0.0, mse_srgb: float = 0.0,
                 lpips: float = 0.0, lpips_model: nn.Module | None = None, lpips_domain: str = "srgb"):
        super().__init__()
        self.weights = {"l1_linear": l1_linear, "mse_linear": mse_linear, "l1_srgb": l1_srgb, "mse_srgb": mse_srgb,
                        "lpips": lpips}
        if any(w < 0 for w in self.weights.values()):
            raise ConfigError(f"loss weights must be >= 0, got {self.weights}")
        if lpips > 0 and lpips_model is None:
            raise ConfigError("an LPIPS weight > 0 needs an LPIPS model (rddm.lpips.LPIPS.from_folder)")
        if lpips_domain not in ("srgb", "linear"):
            raise ConfigError(f"lpips_domain must be 'srgb' or 'linear', got {lpips_domain!r}")
        self.lpips_model = lpips_model if lpips > 0 else None
        self.lpips_domain = lpips_domain

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                isp: ISPBatch | ISPParams | Sequence[ISPParams] | None = None) -> LossOutput:
        """Compare ``(B, 3, H, W)`` linear prediction and target (computed in float32).

        Args:
            pred: the prediction, linear camera RGB.
            target: the ground truth, linear camera RGB.
            isp: the samples' ISP parameters (needed for the sRGB terms and sRGB LPIPS).
        """
        w = self.weights
        pred, target = pred.float(), target.float()
        need_srgb = w["l1_srgb"] > 0 or w["mse_srgb"] > 0 or (w["lpips"] > 0 and self.lpips_domain == "srgb")
        ps = ts = None
        if need_srgb:
            if isp is None:
                raise ConfigError("the sRGB loss terms need the samples' ISP parameters (isp_from_meta(batch['meta']))")
            ps, ts = to_srgb(pred, isp), to_srgb(target, isp)
        terms: dict[str, torch.Tensor] = {}
        if w["l1_linear"] > 0:
            terms["l1_linear"] = F.l1_loss(pred, target)
        if w["mse_linear"] > 0:
            terms["mse_linear"] = F.mse_loss(pred, target)
        if w["l1_srgb"] > 0:
            terms["l1_srgb"] = F.l1_loss(ps, ts)
        if w["mse_srgb"] > 0:
            terms["mse_srgb"] = F.mse_loss(ps, ts)
        if w["lpips"] > 0:
            a, b = (ps, ts) if self.lpips_domain == "srgb" else (pred.clamp(0, 1), target.clamp(0, 1))
            terms["lpips"] = self.lpips_model(a, b).mean()
        total = sum((w[k] * v for k, v in terms.items()), start=pred.new_zeros(()))
        return LossOutput(total, terms, ps, ts)


# ------------------------------------------------------------------------------------------------- GAN


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss ``½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))`` (taming-transformers)."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def vanilla_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator non-saturating loss ``½(mean softplus(−D(x)) + mean softplus(D(x̂)))``."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def generator_gan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator adversarial loss ``−mean D(x̂)`` (LDM's VAE)."""
    return -fake_logits.mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """``λ_G = ‖∇_w L_rec‖ / (‖∇_w L_GAN‖ + 1e-4)`` at the decoder's last layer ``w`` (paper Eq. 5, LDM).

    Both gradients are taken with ``torch.autograd.grad`` (the graph is kept for the backward pass); the result
    is clamped to ``[0, max_weight]``, made finite and detached.
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    lam = g_rec.float().norm() / (g_gan.float().norm() + 1e-4)
    return torch.nan_to_num(lam, nan=0.0, posinf=max_weight).clamp(0.0, max_weight).detach()
