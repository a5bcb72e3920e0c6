"""MNS, the mosaic noise synthesizer ``F_DD^{-1}`` (paper Eq. 11–12): CFA mosaic, sensor noise, sensor encoding.
See ``docs/architecture.md``."""

from .cfa import (DemosaicBilinear, Mosaic, Pattern, as_patterns, cfa_masks, crop, demosaic_bilinear, hflip, mosaic,
                  pack, unpack, vflip)
from .noise import (NoiseEstimate, NoiseModel, NoiseParams, NoiseProfile, add_noise, estimate_noise_level,
                    list_noise_profiles, load_noise_profile, noise_params_at_iso, sample_noise_params)
from .physics import (PhysicsParams, PhysicsProfile, ReadModel, apply_physics_noise, sample_physics_params,
                      tukey_lambda_ppf)
from .sensor import SensorParams, normalize, quantize
from .chain import SRGB_TO_RAW_BACKENDS, srgb_to_raw

__all__ = [
    "DemosaicBilinear", "Mosaic", "NoiseEstimate", "NoiseModel", "NoiseParams", "NoiseProfile", "Pattern",
    "PhysicsParams", "PhysicsProfile", "ReadModel", "SRGB_TO_RAW_BACKENDS", "SensorParams", "add_noise",
    "apply_physics_noise", "as_patterns", "cfa_masks", "crop", "demosaic_bilinear", "estimate_noise_level", "hflip",
    "list_noise_profiles", "load_noise_profile", "mosaic", "noise_params_at_iso", "normalize", "pack", "quantize",
    "sample_noise_params", "sample_physics_params", "srgb_to_raw", "tukey_lambda_ppf", "unpack", "vflip",
]
