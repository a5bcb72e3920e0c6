"""Physics noise (issue 18): each component's statistics on flat patches against scipy/numpy oracles, the
sampler against ELD's laws and LED's colour-bias binning, determinism, profile validation, camera draws."""

from __future__ import annotations

import json
import math
import tarfile

import numpy as np
import pytest
import tifffile
import torch
from scipy import stats

from rawsynth.cameras import CameraConfig, camera_profiles, sample_camera
from rawsynth.cli import main
from rawsynth.errors import ConfigError, InputError
from rawsynth.isp.params import rgb2cam_from_xyz2cam
from rawsynth.mns import SensorParams, load_noise_profile
from rawsynth.mns.physics import PhysicsParams, PhysicsProfile, apply_physics_noise, sample_physics_params
from rawsynth.pipeline import SynthConfig, sample_recipe

SENSOR = SensorParams(14, 512, 16383)
R = SENSOR.range


def _params(components, **kw):
    base = dict(K=2.0, read_model="tukey", sigma_read=5.0, tukey_lambda=0.1, sigma_row=3.0,
                color_bias=(0.7, -0.4, 1.3, -2.1), components=components)
    base.update(kw)
    return PhysicsParams(**base)


def _run(x_dn, params, pattern="RGGB", seed=0, shape=(4, 1, 256, 256)):
    x = torch.full(shape, x_dn / R, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return apply_physics_noise(x, params, SENSOR, pattern, g) * R  # back to DN above black


@pytest.mark.parametrize("level", [20.0, 300.0, 4000.0])
def test_shot_noise_variance_law_and_poisson_lattice(level):
    y = _run(level, _params(("shot",), K=2.5))
    assert torch.allclose(y / 2.5, torch.round(y / 2.5), atol=1e-6)  # K · integer electrons
    mean, var = y.mean().item(), y.var().item()
    n = y.numel()
    assert mean == pytest.approx(level, abs=4 * math.sqrt(2.5 * level / n))
    assert var == pytest.approx(2.5 * level, rel=4 * math.sqrt(2 / n) + 0.01)  # var = K · signal


def test_row_noise_is_one_offset_per_row():
    y = _run(0.0, _params(("row",), sigma_row=3.0), shape=(8, 1, 256, 64))
    assert torch.all(y == y[..., :1])  # constant along each row
    rows = y[..., 0].flatten().numpy()
    n = rows.size
    assert rows.var(ddof=1) == pytest.approx(9.0, rel=4 * math.sqrt(2 / n))
    assert stats.normaltest(rows).pvalue > 1e-3


@pytest.mark.parametrize("lam", [-0.15, 0.0, 0.14])
def test_tukey_read_noise_matches_scipy(lam):
    y = _run(0.0, _params(("read",), sigma_read=5.0, tukey_lambda=lam)).flatten().numpy()
    sub = y[:: max(1, y.size // 60000)]
    assert stats.ppcc_max(sub, brack=(-0.3, 0.3), dist="tukeylambda") == pytest.approx(lam, abs=0.03)
    ks = stats.kstest(sub[:20000], stats.tukeylambda(lam, scale=5.0).cdf)
    assert ks.pvalue > 1e-3


def test_gaussian_read_noise():
    y = _run(0.0, _params(("read",), read_model="gaussian", sigma_read=4.0)).flatten().numpy()
    assert y.std() == pytest.approx(4.0, rel=0.01)
    assert stats.kstest(y[:20000], stats.norm(scale=4.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_colour_bias_lands_on_each_cfa_colour(pattern):
    cb = (0.7, -0.4, 1.3, -2.1)
    y = _run(10.0, _params(("color_bias",), color_bias=cb), pattern=pattern, shape=(1, 1, 8, 8))[0, 0]
    letters = pattern
    pos = {"R": [], "G": [], "B": []}
    for i, ch in enumerate(letters):
        pos[ch].append((i // 2, i % 2))
    (r,), (b,) = pos["R"], pos["B"]
    g1 = next(p for p in pos["G"] if p[0] == r[0])  # the green on the red row
    g2 = next(p for p in pos["G"] if p[0] == b[0])
    for (rr, cc), v in zip((r, g1, g2, b), cb):
        assert torch.allclose(y[rr::2, cc::2], torch.tensor(10.0 + v, dtype=y.dtype))


def test_quantisation_puts_the_output_on_the_dn_grid_and_all_off_is_identity():
    y = _run(123.3, _params(("read", "quant")))
    assert torch.allclose(y, torch.round(y), rtol=0, atol=1e-9)  # whole DN (up to the /range·range round trip)
    assert not torch.allclose(_run(123.3, _params(("read",))), y)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    assert torch.allclose(apply_physics_noise(x, _params(()), SENSOR, "RGGB", torch.Generator()), x, rtol=0, atol=1e-12)


def test_same_seed_same_bytes_and_per_sample_params():
    p = [_params(("shot", "read", "row", "color_bias", "quant")), _params(("shot",), K=7.0)]
    a = _run(500.0, p, seed=3, shape=(2, 1, 64, 64))
    b = _run(500.0, p, seed=3, shape=(2, 1, 64, 64))
    assert torch.equal(a, b)
    assert not torch.equal(a, _run(500.0, p, seed=4, shape=(2, 1, 64, 64)))
    assert torch.allclose(a[1] / 7.0, torch.round(a[1] / 7.0), atol=1e-6)  # sample 1: shot only


def test_sampler_follows_eld_laws_and_led_colour_bias_bins():
    prof = load_noise_profile("SonyA7S2")
    eld = json.loads(prof_path("SonyA7S2"))
    rng = np.random.default_rng(0)
    draws = [sample_physics_params(rng, prof) for _ in range(3000)]
    lk = np.log([d.K for d in draws])
    lo, hi = math.log(prof.k_range[0]), math.log(prof.k_range[1])
    assert stats.kstest((lk - lo) / (hi - lo), "uniform").pvalue > 1e-3  # log K ~ U(log Kmin, log Kmax)
    law = eld["laws"]["sigma_tl"]
    res = np.log([d.sigma_read for d in draws]) - (law["slope"] * lk + law["bias"])
    assert res.mean() == pytest.approx(0.0, abs=0.03) and res.std() == pytest.approx(law["sigma"], rel=0.05)
    # LED's colour-bias index: (K - Kmin) // ((Kmax - Kmin) / count), on the bins in ELD's order
    n = len(prof.points)
    for d in draws[:300]:
        i = min(int((d.K - prof.k_range[0]) // ((prof.k_range[1] - prof.k_range[0]) / n)), n - 1)
        assert d.color_bias == prof.points[i].color_bias
    assert {d.tukey_lambda for d in draws} == {p.tukey_lambda for p in prof.points}  # λ among ELD's G_shape


def prof_path(name):
    from importlib import resources

    return resources.files("rawsynth.profiles").joinpath(name + ".json").read_text()


def test_bundled_profiles_keep_eld_numbers():
    """The bundled JSON against the shared ELD data file (when present): laws unchanged, R G1 B G2 -> R G1 G2 B."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[3] / "shared" / "data" / "eld_camera_params.json"
    if not src.is_file():
        pytest.skip("shared/data not present")
    eld = json.loads(src.read_text())
    for cam in ("CanonEOS5D4", "CanonEOS700D", "CanonEOS70D", "NikonD850", "SonyA7S2"):
        p = load_noise_profile(cam)
        e = eld[cam]
        assert p.k_range == (e["Kmin"], e["Kmax"])
        assert p.sigma_tl.slope == e["Profile-1"]["G_scale"]["slope"]
        assert p.sigma_row.bias == e["Profile-1"]["R_scale"]["bias"]
        cb = e["color_bias"][3]
        assert p.points[3].color_bias == (cb[0], cb[1], cb[3], cb[2])
        assert p.camera.bit_depth == 14


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d["laws"]["sigma_tl"].update(slop=1.0), "slop"),
    (lambda d: d.update(colour="x"), "colour"),
    (lambda d: d["bins"][0].update(tukey_lambda=3.0), "tukey_lambda"),
    (lambda d: d["bins"][1].update(K=-1.0), "bins[1]"),
    (lambda d: d["bins"][0].update(color_bias=[1, 2, 3]), "color_bias"),
    (lambda d: d.update(k_range=[5, 1]), "k_range"),
    (lambda d: d["laws"]["sigma_row"].update(sigma=-0.1), "sigma_row"),
    (lambda d: d.update(components=["shot", "blur"]), "blur"),
])
def test_profile_json_refuses_unknown_keys_and_out_of_range_values_by_name(tmp_path, edit, needle):
    d = json.loads(prof_path("SonyA7S2"))
    edit(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match="invalid noise profile") as ei:
        load_noise_profile(p)
    assert needle in str(ei.value) and str(p) in str(ei.value)
    with pytest.raises(ConfigError):
        PhysicsProfile.from_dict(d)


def test_camera_draws_weighted_virtual_and_own_ccm():
    cfg = CameraConfig.parse("SonyA7S2:1,CanonEOS70D:3", "camera")
    names = [sample_camera(np.random.default_rng(i), cfg, 0).name for i in range(2000)]
    assert names.count("CanonEOS70D") / 2000 == pytest.approx(0.75, abs=0.04)
    v1, v2 = camera_profiles(CameraConfig(virtual=5), 1), camera_profiles(CameraConfig(virtual=5), 1)
    assert v1 == v2 and [c.name for c in v1] == [f"IC{i}" for i in range(5)]
    assert camera_profiles(CameraConfig(virtual=5), 2) != v1  # drawn from the run seed
    lams = [c.points[0].tukey_lambda for c in v1]  # LED's coverage: evenly spaced over its λ range
    assert lams[0] == pytest.approx(-0.24285714285714288) and lams[-1] == pytest.approx(0.2)
    sc = SynthConfig(crop=64, cameras={"names": ["CanonEOS70D"], "ccm": "camera"})
    r = sample_recipe(0, "k0", sc, (64, 64))
    m = np.asarray(load_noise_profile("CanonEOS70D").camera.xyz2cam)
    assert np.allclose(r.isp.rgb2cam, rgb2cam_from_xyz2cam(m))
    assert r.sensor == SensorParams(14, 2048, 15303) and r.camera["ccm"] == "camera"
    with pytest.raises(ConfigError, match="not a camera profile"):
        CameraConfig.parse("default")
    with pytest.raises(ConfigError, match="weight"):
        CameraConfig.parse("SonyA7S2:2,CanonEOS70D")
    with pytest.raises(InputError, match="nope"):
        CameraConfig.parse("nope")


def test_generated_dng_carries_the_camera_tags(tmp_path):
    out = tmp_path / "ds"
    assert main(["generate", "--out", str(out), "--crop", "64", "--num-samples", "2", "--mode", "ddnet",
                 "--cameras", "NikonD850", "--ccm", "camera", "--save-dng", "--no-progress", "--workers", "1"]) == 0
    with tarfile.open(next(out.glob("shard-*.tar"))) as tar:
        m = next(m for m in tar.getmembers() if m.name.endswith(".raw.dng"))
        (tmp_path / "x.dng").write_bytes(tar.extractfile(m).read())
    with tifffile.TiffFile(tmp_path / "x.dng") as tif:  # tags read by tifffile, not rawsynth's reader
        t = tif.pages.first.tags
        assert t[271].value == "Nikon" and t[272].value == "D850"
        assert tuple(np.ravel(t[50717].value)) == (16383,)
        cm = np.asarray(t[50721].value, dtype=float).reshape(-1, 2)
        cm = (cm[:, 0] / cm[:, 1]).reshape(3, 3)
    # the sample's rgb2cam came from D850's matrix: the written ColorMatrix1 gives the same rgb2cam
    assert np.allclose(rgb2cam_from_xyz2cam(cm), rgb2cam_from_xyz2cam(load_noise_profile("NikonD850").camera.xyz2cam),
                       atol=1e-5)


def test_onthefly_refuses_physics_noise_with_a_pointer():
    from rawsynth.onthefly import OnTheFlySynth

    with pytest.raises(ConfigError, match="rawsynth generate"):
        OnTheFlySynth(SynthConfig(crop=64, noise_profile="SonyA7S2"), device="cpu")
