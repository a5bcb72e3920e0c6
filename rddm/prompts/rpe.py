"""The RPE chain (:class:`RawPromptExtractor`): RAW → DDNet → PTP → sRGB → extractor → text → embedding.
See ``docs/rddm.md``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from rawsynth._checks import check_bchw
from rawsynth.errors import ShapeError
from rawsynth.isp import ISPBatch, ISPParams
from rawsynth.mns import Pattern, demosaic_bilinear

from ..errors import ConfigError
from ..losses import to_srgb
from ._common import PatternsLike
from .encoder import PromptEncoder
from .extractors import PromptExtractor, _uses_image, build_extractor


def raw_to_srgb(raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams],
                ddnet: torch.nn.Module | None = None) -> torch.Tensor:
    """RPE's rendering: RAW → DDNet (or the bilinear demosaic) → PTP → sRGB, without gradients.

    Args:
        raw: ``(B, 1, H, W)`` float normalised RAW mosaic (``H``, ``W`` even).
        patterns: the Bayer pattern of each sample (one for all, or ``B``).
        isp: each sample's PTP parameters (e.g. :func:`rddm.losses.isp_from_meta` of the batch's meta, or the
            file's white balance and colour matrix at inference).
        ddnet: a :class:`~rddm.models.ddnet.DDNet`, run on its own device and dtype; ``None``: the bilinear
            demosaic (Table 6's "ISPPE").

    Returns:
        ``(B, 3, H, W)`` float32 sRGB in ``[0, 1]`` on the DDNet's device (``raw``'s without DDNet).
    """
    check_bchw(raw, "raw", channels=1)
    with torch.no_grad():
        if ddnet is None:
            linear = demosaic_bilinear(raw.float(), patterns)
        else:
            p = next(ddnet.parameters())
            linear = ddnet(raw.to(device=p.device, dtype=p.dtype), patterns)
        return to_srgb(linear.float(), isp).clamp(0.0, 1.0)


class RawPromptExtractor:
    """RPE: RAW → DDNet (bilinear without) → PTP → sRGB → ``extractor`` → texts → ``encoder`` → embeddings.

    Args:
        extractor: a :class:`PromptExtractor` (:func:`build_extractor`).
        encoder: the :class:`PromptEncoder`; may be ``None`` when only :meth:`texts` is used.
        ddnet: a trained :class:`~rddm.models.ddnet.DDNet` (RPE proper) or ``None`` (bilinear: "ISPPE").
    """

    def __init__(self, extractor: PromptExtractor, encoder: PromptEncoder | None, ddnet: torch.nn.Module | None = None):
        if not callable(extractor):
            raise ConfigError(f"the prompt extractor must be callable, got {type(extractor).__name__}")
        self.extractor = extractor
        self.encoder = encoder
        self.ddnet = None if ddnet is None else ddnet.eval()

    @classmethod
    def build(cls, sd_model: str | os.PathLike, extractor: str = "none",
              ddnet: str | os.PathLike | torch.nn.Module | None = None, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, cache_size: int = 256) -> RawPromptExtractor:
        """Everything from paths: the SD folder's text encoder, ``build_extractor(extractor)`` and, for an
        extractor that reads images, the DDNet of a ``rddm train-ddnet`` folder (skipped otherwise).

        Raises:
            WeightsError / ConfigError: as :meth:`PromptEncoder.from_sd`, :func:`build_extractor`,
                :meth:`DDNet.from_pretrained <rddm.models.ddnet.DDNet.from_pretrained>`.
        """
        ex = build_extractor(extractor, device=device, dtype=dtype)
        net = ddnet
        if isinstance(ddnet, (str, os.PathLike)):
            if _uses_image(ex):
                from ..models.ddnet import DDNet

                net = DDNet.from_pretrained(ddnet).to(device=device)
            else:
                net = None
        return cls(ex, PromptEncoder.from_sd(sd_model, device=device, dtype=dtype, cache_size=cache_size), net)

    @property
    def uses_image(self) -> bool:
        """Whether the extractor reads the image (``False``: DDNet and PTP are skipped)."""
        return _uses_image(self.extractor)

    def srgb(self, raw: torch.Tensor, patterns: PatternsLike, isp) -> torch.Tensor:
        """The picture the extractor sees: :func:`raw_to_srgb` with this RPE's DDNet."""
        return raw_to_srgb(raw, patterns, isp, self.ddnet)

    def texts(self, raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams] | None
              ) -> list[str]:
        """One prompt per sample.

        Args:
            raw: ``(B, 1, H, W)`` float normalised RAW mosaic.
            patterns: one Bayer pattern or ``B``.
            isp: the samples' PTP parameters (may be ``None`` when the extractor ignores images).

        Raises:
            ShapeError: bad ``raw``/``patterns``, or no ``isp`` for an extractor that reads images.
            ConfigError: the extractor returned something else than ``B`` strings.
        """
        check_bchw(raw, "raw", channels=1)
        b = raw.shape[0]
        if self.uses_image:
            if isp is None:
                raise ShapeError("RPE needs the samples' ISP parameters (isp=) to render the RAW for the prompt "
                                 "extractor")
            if not isinstance(patterns, (str, Pattern)) and len(patterns) != b:
                raise ShapeError(f"got {len(patterns)} patterns for a batch of {b}")
            image = self.srgb(raw, patterns, isp)
        else:
            image = raw.new_empty(b, 3, 0, 0)
        with torch.no_grad():
            out = self.extractor(image)
        if isinstance(out, str) or not isinstance(out, Sequence) or len(out) != b or \
                not all(isinstance(t, str) for t in out):
            raise ConfigError(f"prompt extractor {type(self.extractor).__name__} returned {out!r}; expected a list "
                              f"of {b} strings", fix="return one prompt string per image")
        return list(out)

    def embeds(self, raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams] | None
               ) -> torch.Tensor:
        """``(B, 77, D)`` prompt embeddings of :meth:`texts` (encoder device and dtype)."""
        if self.encoder is None:
            raise ConfigError("this RawPromptExtractor has no PromptEncoder", fix="pass encoder=PromptEncoder.from_sd"
                              "(SD_FOLDER)")
        return self.encoder.encode(self.texts(raw, patterns, isp))
