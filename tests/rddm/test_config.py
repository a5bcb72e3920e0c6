"""Configs: strict parsing (unknown keys, types, ranges), bundled defaults, YAML round trip, the CLI's errors."""

from __future__ import annotations

import dataclasses

import pytest

from rddm.cli import STAGES, default_config_path, main
from rddm.config import (CalibrateConfig, DDNetModelConfig, DDNetTrainConfig, RDDMTrainConfig, RVAETrainConfig,
                         config_diff, config_from_dict, load_config, load_yaml, replace_path, save_config)
from rddm.errors import ConfigError

from .conftest import write_yaml


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_bundled_config_files_are_the_defaults(stage):
    cls = {"ddnet": DDNetTrainConfig, "rvae": RVAETrainConfig, "calibrate": CalibrateConfig,
           "rddm": RDDMTrainConfig}[stage]
    assert config_from_dict(cls, load_yaml(default_config_path(stage))) == cls()


def test_config_command_prints_the_bundled_file(capsys):
    assert main(["config", "rvae"]) == 0
    assert capsys.readouterr().out == default_config_path("rvae").read_text()


def test_partial_sections_keep_the_stage_defaults():
    cfg = config_from_dict(DDNetTrainConfig, {"data": {"crop": 64}, "optim": {"lr": "3e-4"}})
    assert cfg.data.crop == 64 and cfg.data.mode == "ddnet"  # DDNet's own data default
    assert cfg.optim.lr == 3e-4 and cfg.optim.lr_scheduler == "cosine"
    rv = config_from_dict(RVAETrainConfig, {"optim": {"lr": 1e-5}})
    assert rv.optim.betas == (0.5, 0.9)  # the RVAE's default betas stay


@pytest.mark.parametrize("d,needle", [
    ({"lrr": 1}, "unknown key(s) ['lrr'] in the config"),
    ({"data": {"cropp": 3}}, "unknown key(s) ['cropp'] in section 'data'"),
    ({"optim": {"betas": [0.9]}}, "optim.betas must be a list of 2 values"),
    ({"data": {"crop": 33}}, "data.crop must be null or an even int"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be one of ['no', 'bf16', 'fp16']"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an int"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing must be true or false"),
    ({"model": {"block_out_channels": ["a"]}}, "model.block_out_channels[0] must be an int"),
    ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
    ([1, 2], "must be a mapping"),
])
def test_invalid_configs_name_the_key_and_the_file(d, needle, tmp_path):
    with pytest.raises(ConfigError) as e:
        config_from_dict(DDNetTrainConfig, d, source=tmp_path / "c.yaml")
    assert needle in str(e.value) and "c.yaml" in str(e.value)


def test_rvae_model_sources_are_exclusive():
    with pytest.raises(ConfigError, match="only one of sd_model, vae_config and init"):
        config_from_dict(RVAETrainConfig, {"model": {"sd_model": "/sd", "vae_config": {}}})


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = config_from_dict(RVAETrainConfig, {"max_steps": 7, "model": {"vae_config": {"latent_channels": 4}},
                                             "data": {"shards": "/one/folder"}})
    assert cfg.data.shards == ("/one/folder",)  # one path is a list of one
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(RVAETrainConfig, tmp_path / "c.yaml") == cfg
    over = load_config(RVAETrainConfig, tmp_path / "c.yaml", {"max_steps": 9, "model.sd_model": None,
                                                              "loss.lpips_weights": "/w"})
    assert over.max_steps == 9 and over.loss.lpips_weights == "/w" and over.model.sd_model is None
    assert config_diff(cfg, over) == ["max_steps", "loss.lpips_weights"]
    assert replace_path(cfg, "loss.kl", 0.0).loss.kl == 0.0


def test_model_config_mirrors_ddnet_signature():
    import inspect

    from rddm.models.ddnet import DDNet

    params = [p for p in inspect.signature(DDNet.__init__).parameters if p != "self"]
    assert [f.name for f in dataclasses.fields(DDNetModelConfig)] == params


def test_cli_bad_yaml_key_exits_2_with_file_and_key(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "bad.yaml", {"optim": {"learning_rate": 1e-4}})
    assert main(["train-ddnet", "--config", str(cfg), "--out", str(tmp_path / "o"), "--shards", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "learning_rate" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_invalid_yaml_syntax(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("data: {crop: [\n")
    assert main(["train-rvae", "--config", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "broken.yaml: invalid YAML" in capsys.readouterr().err
