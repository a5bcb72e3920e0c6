"""The ISP core: IPTP (:func:`unprocess`) and PTP (:func:`process`) with their parameters. See ``docs/isp.md``."""

from .iptp import (EPS, UNPROCESS_BACKENDS, Unprocess, apply_matrix, inverse_gamma, inverse_tone,
                   inverse_white_balance, invertible_mask, linear_lut, lut_lookup, unprocess)
from .params import (RGB2XYZ, XYZ2CAMS, ISPBatch, ISPConfig, ISPParams, fixed_isp_params,
                     rgb2cam_from_xyz2cam, sample_isp_params)
from .ptp import Process, gamma, process, tone, white_balance

__all__ = [
    "EPS", "RGB2XYZ", "UNPROCESS_BACKENDS", "XYZ2CAMS", "ISPBatch", "ISPConfig", "ISPParams", "Process", "Unprocess",
    "apply_matrix", "fixed_isp_params", "gamma", "inverse_gamma", "inverse_tone", "inverse_white_balance",
    "invertible_mask", "linear_lut", "lut_lookup", "process", "rgb2cam_from_xyz2cam", "sample_isp_params", "tone",
    "unprocess", "white_balance",
]
