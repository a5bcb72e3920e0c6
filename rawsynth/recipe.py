"""Every random parameter of one sample, drawn from ``(seed, key)`` alone: :class:`SampleRecipe`,
:func:`sample_recipe`, and the metadata a shard records for it (:func:`recipe_meta`). See ``docs/format.md``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ._version import __version__
from .crop import CropBox
from .degrade import sample_degradation
from .errors import ConfigError
from .isp import ISPParams, sample_isp_params
from .mns import NoiseParams, Pattern, SensorParams, sample_noise_params
from .mns.physics import PhysicsProfile, sample_physics_params
from .rng import derive_seed, numpy_rng
from .synth_config import Mode, SynthConfig

__all__ = ["SampleRecipe", "Recipe", "sample_recipe", "recipe_meta"]


@dataclass(frozen=True)
class SampleRecipe:
    """Every parameter of one sample, drawn from ``(seed, key)`` alone by :func:`sample_recipe`.

    :func:`synthesize` (the shards) and :class:`rawsynth.onthefly.OnTheFlySynth` (training on the GPU) both
    draw through :func:`sample_recipe`, so the same ``(seed, key, config, size)`` gives the same parameters.

    Attributes:
        isp: the ISP parameters (stream ``"isp"``).
        pattern: the Bayer pattern (stream ``"pattern"``, uniform over ``config.patterns``).
        noise: the noise parameters (stream ``"noise"``, from ``config.profile()`` or the sample's camera):
            :class:`~rawsynth.mns.NoiseParams` (Eq. 11) or :class:`~rawsynth.mns.physics.PhysicsParams`.
        sensor: the sensor (``config.sensor``, or the camera's; not random).
        degradation: the detail degradation (stream ``"degradation"``) in ``rddm`` mode, ``None`` in ``ddnet``.
        noise_seed: the seed of the noise field, ``derive_seed(seed, key, "noise-field")`` (the CPU path seeds a
            ``torch.Generator`` with it, the GPU kernel its counter-based RNG).
    """

    isp: ISPParams
    pattern: Pattern
    noise: NoiseParams
    sensor: SensorParams
    degradation: object | None
    noise_seed: int
    camera: dict | None = None


def _camera_and_profile(seed: int, key: str, config: SynthConfig):
    """The sample's camera profile (stream ``"camera"``) when ``config.cameras`` is set, else the noise profile."""
    if config.cameras is None:
        return config.profile()
    from .cameras import sample_camera

    return sample_camera(numpy_rng(seed, key, "camera"), config.cameras, seed)


#: Deprecated name of :class:`SampleRecipe` (``benchmarks.builders.Recipe`` is a benchmark's recipe, another thing).
Recipe = SampleRecipe


def sample_recipe(seed: int, key: str, config: SynthConfig, size: tuple[int, int]) -> SampleRecipe:
    """Draw every parameter of sample ``key`` (the draws of :func:`synthesize`, without the image).

    Args:
        seed: the run seed.
        key: the sample key.
        config: what to make.
        size: ``(H, W)`` of the HQ crop (the degradation is drawn for it).

    Returns:
        The sample's :class:`SampleRecipe`.

    Raises:
        ShapeError: ``size`` does not suit the degradation (not a multiple of its scale, or too small).
    """
    prof = _camera_and_profile(seed, key, config)
    isp_cfg, camera, sensor = config.isp, None, config.sensor
    if isinstance(prof, PhysicsProfile):
        sensor = prof.sensor(config.sensor)
        info = prof.camera
        ccm = "brooks"
        if config.cameras is not None and config.cameras.ccm == "camera" and info is not None and info.xyz2cam:
            isp_cfg, ccm = dataclasses.replace(config.isp, xyz2cam=(info.xyz2cam,)), "camera"
        camera = {"name": prof.name, "make": info.make if info else None, "model": info.model if info else None,
                  "ccm": ccm}
        noise = sample_physics_params(numpy_rng(seed, key, "noise"), prof)
    else:
        noise = sample_noise_params(numpy_rng(seed, key, "noise"), prof)
    isp = sample_isp_params(numpy_rng(seed, key, "isp"), isp_cfg)
    patterns = config.patterns
    pattern = patterns[int(numpy_rng(seed, key, "pattern").integers(len(patterns)))]
    deg = None
    if config.mode is Mode.RDDM:
        deg = sample_degradation(numpy_rng(seed, key, "degradation"), config.degradation, tuple(size))
    elif config.mode is not Mode.DDNET:
        raise ConfigError(f"unknown mode {config.mode!r}")
    return SampleRecipe(isp, pattern, noise, sensor, deg, derive_seed(seed, key, "noise-field"), camera)


def recipe_meta(recipe: SampleRecipe, key: str, seed: int, config: SynthConfig, size: tuple[int, int],
                source: dict | None = None, crop: CropBox | None = None) -> dict:
    """The metadata a shard records for a sample (``meta.json``, see ``docs/format.md``)."""
    deg = recipe.degradation
    meta = {
        "key": key, "seed": int(seed), "mode": config.mode.value, "pattern": recipe.pattern.value,
        "sensor": recipe.sensor.to_dict(), "isp": recipe.isp.to_dict(), "noise": recipe.noise.to_dict(),
        "noise_profile": config.noise_profile,
        "degradation": deg.to_dict() if deg is not None else None,
        "source": source, "crop": crop.to_dict() if crop is not None else None,
        "size": [int(size[0]), int(size[1])], "version": __version__,
    }
    if recipe.camera is not None:  # only with cameras or a physics profile: default metadata is unchanged
        meta["camera"] = recipe.camera
    return meta
