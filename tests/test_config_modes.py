"""The one config system serves every dataclass-from-mapping path: ``from_mapping``'s ``init``/``required``/``what``
modes, and the classes moved onto it (``RDDMConfig``, ``CameraConfig``, ``Recipe``, ``DndRecipe``). Round trips go
through PyYAML's own dump/load (a reader/writer we did not write)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from rawsynth._config import from_mapping, to_dict
from rawsynth.errors import ConfigError


@dataclass(frozen=True)
class _EitherOr:  # like CameraConfig: every field has a default, yet the default instance is invalid
    names: tuple[str, ...] = ()
    count: int = 0

    def __post_init__(self):
        if bool(self.names) == bool(self.count):
            raise ConfigError("give either names or count")


def _yaml_round_trip(d: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(d))


def test_init_mode_builds_a_class_whose_default_instance_is_invalid():
    with pytest.raises(ConfigError, match="either names or count"):  # base mode builds _EitherOr() first
        from_mapping(_EitherOr, {"count": 2})
    assert from_mapping(_EitherOr, {"count": 2}, init=True) == _EitherOr(count=2)
    assert from_mapping(_EitherOr, {"names": ["a"]}, init=True, convert=True) == _EitherOr(names=("a",))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['cnt'\] in section 'x'") as e:
        from_mapping(_EitherOr, {"cnt": 2}, "x", init=True)
    assert e.value.fix == "remove or rename x.cnt"


def test_required_and_what_name_the_keys():
    with pytest.raises(ConfigError, match=r"missing thing keys \['count'\]"):
        from_mapping(_EitherOr, {"names": ["a"]}, init=True, required=("count",), what="thing")
    with pytest.raises(ConfigError, match=r"unknown thing keys \['nope'\] in section 's'; valid keys are"):
        from_mapping(_EitherOr, {"nope": 1}, "s", init=True, what="thing")


def test_camera_config_from_dict_is_from_mapping():
    from rawsynth.cameras import CameraConfig

    c = CameraConfig(names=("SonyA7S2", "CanonEOS70D"), weights=(1.0, 3.0), ccm="camera")
    assert c.to_dict() == {"names": ["SonyA7S2", "CanonEOS70D"], "weights": [1.0, 3.0], "virtual": 0,
                           "ccm": "camera"}
    assert CameraConfig.from_dict(_yaml_round_trip(c.to_dict())) == c
    assert CameraConfig.from_dict({"virtual": 3, "names": None}) == CameraConfig(virtual=3)
    assert CameraConfig.from_dict({"virtual": 3}) == CameraConfig(virtual=3)  # no `cls()` base needed
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['nmes'\] in section 'cameras'") as e:
        CameraConfig.from_dict({"virtual": 3, "nmes": ["a"]})
    assert e.value.fix == "remove or rename cameras.nmes"
    with pytest.raises(ConfigError, match="either names"):
        CameraConfig.from_dict({})


def test_rddm_config_from_dict_is_from_mapping(tmp_path):
    from rddm.models.rddm_config import RDDMConfig

    c = RDDMConfig(patterns=("GRBG", "RGGB"), lora_alpha=8.0, lora_init="gaussian", sd_model="/sd")
    assert c.to_dict()["patterns"] == ["GRBG", "RGGB"]
    assert RDDMConfig.from_dict(_yaml_round_trip(c.to_dict())) == c
    f = tmp_path / "rddm_config.json"
    with pytest.raises(ConfigError, match=r"unknown RDDM config keys \['lora_rnk'\]") as e:
        RDDMConfig.from_dict({"lora_rnk": 4}, path=f)
    assert e.value.path == str(f) and e.value.fix == "remove or rename lora_rnk"
    with pytest.raises(ConfigError, match="lora_rank must be an int >= 1") as e:
        RDDMConfig.from_dict({"lora_rank": 0}, path=f)
    assert e.value.path == str(f)


def test_recipe_from_dict_is_from_mapping():
    from benchmarks.builders.recipe import Recipe, load_recipe

    r = load_recipe("realsr")
    assert Recipe.from_dict(_yaml_round_trip(r.to_dict())) == r
    d = r.to_dict()
    with pytest.raises(ConfigError, match=r"unknown recipe keys \['bogus'\] in section 'source'") as e:
        Recipe.from_dict({**d, "source": {**d["source"], "bogus": 1}}, "my.yaml")
    assert e.value.path == "my.yaml" and e.value.fix == "remove or rename source.bogus"
    with pytest.raises(ConfigError, match=r"unknown group keys \['nmes'\] in section 'source.groups\[0\]'"):
        Recipe.from_dict({**d, "source": {"groups": [{"folder": "a", "nmes": "x"}]}}, "my.yaml")
    with pytest.raises(ConfigError, match=r"unknown recipe keys \['groups'\] at the top level") as e:
        Recipe.from_dict({**d, "groups": []}, "my.yaml")
    assert e.value.fix == "move groups under `source:`"


def test_dnd_recipe_load_is_from_mapping(tmp_path):
    from benchmarks.dnd import DndRecipe

    r = DndRecipe.load()
    assert r == DndRecipe() and to_dict(r) == r.to_dict()
    f = tmp_path / "dnd.yaml"
    f.write_text(yaml.safe_dump({**r.to_dict(), "images": 2, "sensor": {"black_level": 2048}}))
    got = DndRecipe.load(f)
    assert got.images == 2 and (got.sensor.black_level, got.sensor.white_level) == (2048, 65535)
    f.write_text("imgs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown DND recipe keys \['imgs'\]") as e:
        DndRecipe.load(f)
    assert e.value.path == str(f)
    f.write_text("images: x\n")
    with pytest.raises(ConfigError, match="images must be an int"):
        DndRecipe.load(f)
