"""CMB LoRA — configurable multi-Bayer LoRA (paper §3.2): one peft LoRA group per Bayer pattern, adapter
``cmb_<PATTERN>``, in the RVAE encoder and the SD UNet (see ``docs/rddm.md``)."""

from .groups import (ALL, CMB_DIR, ENCODER_TARGETS, ENCODER_TARGETS_QUANT, PREFIX, UNET_TARGETS, active_adapter,
                     active_cmb, adapter_name, adapters_disabled, add_adapter, add_cmb_lora, cmb_adapter_names,
                     cmb_groups, cmb_patterns, enable_gradient_checkpointing, group_for, run_grouped)
from .io import (load_adapter, load_cmb_lora, load_cmb_weights, merge_adapter, merged_adapters, save_adapter,
                 save_cmb_lora, unmerge_adapters)

__all__ = ["PREFIX", "ALL", "ENCODER_TARGETS", "ENCODER_TARGETS_QUANT", "UNET_TARGETS", "adapter_name",
           "add_cmb_lora", "cmb_patterns", "cmb_groups", "cmb_adapter_names", "group_for", "active_cmb",
           "active_adapter", "adapters_disabled", "run_grouped", "save_cmb_lora", "load_cmb_lora",
           "load_cmb_weights", "add_adapter", "save_adapter", "load_adapter", "merge_adapter", "unmerge_adapters",
           "merged_adapters", "enable_gradient_checkpointing", "CMB_DIR"]
