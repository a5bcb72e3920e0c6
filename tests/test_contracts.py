"""The project's shared contracts (docs/architecture.md): one config system, one error contract, one device
resolver. Checked against what we did not write: PyYAML parses the files, ``pickle`` round-trips the errors,
``torch.device`` names the devices."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from enum import Enum

import pytest
import torch
import yaml

from rawsynth._config import ConfigMixin, from_mapping, load_yaml, to_dict
from rawsynth.device import check_device, resolve_device
from rawsynth.errors import ConfigError, InputError, RawsynthError, UnsupportedCFAError


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner(ConfigMixin):
    size: int = 3
    colour: Colour = Colour.RED


@dataclass(frozen=True)
class Outer(ConfigMixin):
    name: str
    ratio: float = 0.5
    sizes: tuple[int, ...] = ()
    inner: Inner = field(default_factory=lambda: Inner(size=5))
    other: Inner | None = None


def test_from_mapping_converts_nests_and_keeps_the_base_values():
    cfg = from_mapping(Outer, {"name": "a", "ratio": 2, "sizes": [1, 2], "inner": {"colour": "blue"},
                               "other": {"size": 7}}, convert=True)
    assert cfg.ratio == 2.0 and isinstance(cfg.ratio, float) and cfg.sizes == (1, 2)
    assert cfg.inner == Inner(size=5, colour=Colour.BLUE)  # the partial section kept the outer default size=5
    assert cfg.other == Inner(size=7)
    assert from_mapping(Outer, yaml.safe_load(yaml.safe_dump(to_dict(cfg))), convert=True) == cfg


@pytest.mark.parametrize("d,needle", [
    ({"name": "a", "nmae": 1}, "unknown key(s) ['nmae'] in the config"),
    ({"name": "a", "inner": {"sise": 1}}, "unknown key(s) ['sise'] in section 'inner'"),
    ({"ratio": 1.0}, "missing key(s) ['name']"),
    ({"name": "a", "inner": {"colour": "green"}}, "inner.colour must be one of ['red', 'blue']"),
    ({"name": "a", "sizes": [1, "x"]}, "sizes[1] must be an int"),
    ([1], "must be a mapping"),
])
def test_from_mapping_names_the_fault(d, needle):
    with pytest.raises(ConfigError) as e:
        from_mapping(Outer, d, convert=True)
    assert needle in str(e.value)


def test_unknown_keys_name_the_dotted_fix():
    with pytest.raises(ConfigError) as e:
        from_mapping(Outer, {"name": "a", "inner": {"sise": 1}})
    assert e.value.fix == "remove or rename inner.sise"


@pytest.mark.parametrize("text,needle", [
    ("a: [1, 2\n", "invalid YAML"),
    ("- 1\n- 2\n", "top level must be a mapping"),
])
def test_load_yaml_faults_are_one_config_error_naming_the_file(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    assert e.value.path == str(p) and needle in str(e.value) and e.value.fix
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_error_contract_renders_path_message_fix_and_pickles():
    e = ConfigError("bad value", path="/x/c.yaml", fix="edit it")
    assert str(e) == "/x/c.yaml: bad value. Fix: edit it"
    assert isinstance(e, RawsynthError) and isinstance(e, ValueError)
    old = InputError("/x/a.png", "truncated", "3 bytes", "re-download it")  # the positional form
    new = InputError("3 bytes", path="/x/a.png", reason="truncated", fix="re-download it")
    assert (old.path, old.reason, old.detail, old.fix, old.hint) == ("/x/a.png", "truncated", "3 bytes",
                                                                     "re-download it", "re-download it")
    assert (new.path, new.reason, new.fix) == (old.path, old.reason, old.fix)
    for err in (e, old, new, UnsupportedCFAError("/x/b.dng", "unsupported CFA", "X-Trans")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__


def test_one_config_error_class_for_all_packages():
    import benchmarks.errors  # noqa: F401  (imports rawsynth's ConfigError, defines none)
    import rddm.errors

    assert rddm.errors.ConfigError is ConfigError


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:1", None, torch.device("cpu")])
def test_device_spellings(spec):
    assert check_device(spec) in ("auto", "cpu", "cuda", "cuda:1")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "CPU", "cuda:x", "mps"])
def test_bad_device_spellings_are_config_errors(spec):
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        check_device(spec)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=torch.cuda.device_count()) == torch.device("cuda", 0)
    else:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
