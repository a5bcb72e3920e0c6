"""The ISP core: IPTP (:func:`unprocess`) and PTP (:func:`process`) with their parameters."""

from .iptp import (EPS, Unprocess, apply_matrix, inverse_gamma, inverse_tone, inverse_white_balance,
                   invertible_mask, unprocess)
from .params import (RGB2XYZ, XYZ2CAMS, ISPBatch, ISPConfig, ISPParams, fixed_isp_params,
                     rgb2cam_from_xyz2cam, sample_isp_params)
from .ptp import Process, gamma, process, tone, white_balance

__all__ = [
    "EPS", "RGB2XYZ", "XYZ2CAMS", "ISPBatch", "ISPConfig", "ISPParams", "Process", "Unprocess",
    "apply_matrix", "fixed_isp_params", "gamma", "inverse_gamma", "inverse_tone", "inverse_white_balance",
    "invertible_mask", "process", "rgb2cam_from_xyz2cam", "sample_isp_params", "tone", "unprocess",
    "white_balance",
]
