"""Physics profiles and params on the one config system (rawsynth._config): round trips and key errors."""

import copy
import json

import numpy as np
import pytest

from rawsynth.errors import ConfigError
from rawsynth.mns.noise import list_noise_profiles, load_noise_profile
from rawsynth.mns.physics import PhysicsParams, PhysicsProfile, sample_physics_params


def _physics():
    return [p for p in map(load_noise_profile, list_noise_profiles()) if isinstance(p, PhysicsProfile)]


def test_bundled_profiles_and_their_params_round_trip():
    profiles = _physics()
    assert len(profiles) >= 5
    for p in profiles:
        d = p.to_dict()
        assert PhysicsProfile.from_dict(json.loads(json.dumps(d))) == p
        pp = sample_physics_params(np.random.default_rng(0), p)
        assert pp.to_dict()["model"] == "physics" and json.loads(pp.to_json()) == pp.to_dict()
        assert PhysicsParams.from_dict(json.loads(pp.to_json())) == pp


@pytest.mark.parametrize("edit,needles", [
    (lambda d: d["laws"]["sigma_tl"].pop("slope"), ["missing", "slope", "laws.sigma_tl"]),
    (lambda d: d["laws"].update(sigma_x={}), ["unknown", "sigma_x"]),
    (lambda d: d.pop("laws"), ["missing", "laws"]),
    (lambda d: d["bins"][1].update(Q=1.0), ["unknown", "Q", "bins[1]"]),
    (lambda d: d["camera"].pop("make"), ["missing", "make", "camera"]),
    (lambda d: d.update(kind="eq11"), ["kind"]),
])
def test_profile_faults_name_the_key(edit, needles):
    d = copy.deepcopy(load_noise_profile("SonyA7S2").to_dict())
    edit(d)
    with pytest.raises(ConfigError) as ei:
        PhysicsProfile.from_dict(d)
    assert all(n in str(ei.value) for n in ["SonyA7S2", *needles])


def test_params_faults_name_the_key():
    d = sample_physics_params(np.random.default_rng(0), load_noise_profile("SonyA7S2")).to_dict()
    with pytest.raises(ConfigError, match="unknown.*'x'"):
        PhysicsParams.from_dict({**d, "x": 1})
    with pytest.raises(ConfigError, match="missing.*'K'"):
        PhysicsParams.from_dict({k: v for k, v in d.items() if k != "K"})
    with pytest.raises(ConfigError, match="model must be 'physics'"):
        PhysicsParams.from_dict({**d, "model": "eq11"})
