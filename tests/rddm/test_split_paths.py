"""The modules split at their seams keep every public import path: each name of the old module's ``__all__`` is
importable from it and is the very object its new module defines."""

from __future__ import annotations

import importlib

import pytest

# old module -> {name: new module} (the names the old file defined before the split)
MOVED = {
    "rddm.config": {
        **dict.fromkeys(["OnTheFlyConfig", "DataConfig", "OptimConfig"], "rddm.config_sections"),
        **dict.fromkeys(["RDDMModelConfig", "RDDMLossConfig", "PromptConfig", "OSEDIFF_NEGATIVE_PROMPT"],
                        "rddm.config_rddm"),
        **dict.fromkeys(["config_from_dict", "config_to_dict", "load_config", "save_config", "replace_path",
                         "config_diff"], "rddm.config_io"),
        **dict.fromkeys(["TrainConfig", "DDNetModelConfig", "DDNetTrainConfig", "RVAEModelConfig", "RVAELossConfig",
                         "RVAETrainConfig", "CalibrateConfig", "RDDMTrainConfig"], "rddm.config"),
    },
    "rddm.lora": {
        **dict.fromkeys(["PREFIX", "ALL", "CMB_DIR", "ENCODER_TARGETS", "ENCODER_TARGETS_QUANT", "UNET_TARGETS",
                         "adapter_name", "add_cmb_lora", "cmb_patterns", "cmb_groups", "cmb_adapter_names",
                         "group_for", "active_cmb", "active_adapter", "adapters_disabled", "run_grouped",
                         "add_adapter", "enable_gradient_checkpointing"], "rddm.lora.groups"),
        **dict.fromkeys(["save_cmb_lora", "load_cmb_lora", "load_cmb_weights", "save_adapter", "load_adapter",
                         "merge_adapter", "unmerge_adapters", "merged_adapters"], "rddm.lora.io"),
    },
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_re_export_the_moved_names(old):
    mod = importlib.import_module(old)
    assert set(MOVED[old]) <= set(mod.__all__)
    for name, new in MOVED[old].items():
        assert getattr(mod, name) is getattr(importlib.import_module(new), name), name


def test_rddm_keeps_its_folder_methods():
    from rddm.models.rddm import RDDM
    from rddm.models.rddm_folder import RDDMFolderMixin

    assert issubclass(RDDM, RDDMFolderMixin)
    for name in ("save_pretrained", "from_pretrained", "read_config", "load_lora_weights", "load_checkpoint_weights"):
        assert name in vars(RDDMFolderMixin) and name not in vars(RDDM), name
