"""Benchmark recipes (``benchmarks/recipes/*.yaml``): which source files, which crop, every synthesis
setting of a test set. See ``docs/benchmarks.md``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rawsynth.errors import ConfigError, InputError
from rawsynth.mns import Pattern, SensorParams
from rawsynth._config import from_mapping, load_yaml, to_dict, with_path
from rawsynth.pipeline import Mode, SynthConfig

__all__ = ["CropPolicy", "Group", "Recipe", "recipe_names", "layout_recipe_names", "load_recipe",
           "load_recipe_dict"]

BUILTIN = ("div2k-val", "realsr", "drealsr")
#: Bundled recipes of other source layouts of the same test sets, tried after the official one by
#: :func:`benchmarks.builders.detect.detect_layout` (``benchmarks/recipes/NAME-LAYOUT.yaml``).
LAYOUT_VARIANTS = {"div2k-val": ("div2k-val-stablesr",), "realsr": ("realsr-stablesr",),
                   "drealsr": ("drealsr-stablesr",)}


class CropPolicy:
    """How the HQ image is cut from the source: ``CENTER`` (``size`` x ``size``, even offsets) or ``FULL``."""

    CENTER = "center"
    FULL = "full"
    ALL = (CENTER, FULL)


@dataclass(frozen=True)
class Group:
    """One folder of a dataset layout.

    Either ``names`` (a ``str.format`` template over ``i``) with ``range = (first, last)`` — the exact
    expected file names — or ``glob`` (one pattern or a list) with ``count`` — any file matching, checked by
    number. ``ignore`` lists glob patterns of expected neighbours (e.g. LR images next to the HR ones) that are
    not part of the set. ``size = [height, width]``: every member must have exactly this size (how the 512²
    test crops are told apart from full-size images). ``aliases``: other folders (relative to the root) that
    may hold the group when ``folder`` does not exist; ``"."`` is the root itself, i.e. ``--src`` may be the
    image folder whatever its name.
    """

    folder: str
    names: str | None = None
    range: tuple[int, int] | None = None
    glob: str | tuple[str, ...] | None = None
    count: int | None = None
    ignore: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if isinstance(self.glob, (list, tuple)):
            object.__setattr__(self, "glob", tuple(self.glob))
        if self.size is not None:
            size = tuple(self.size) if isinstance(self.size, (list, tuple)) else ()
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                raise ConfigError(f"recipe group {self.folder!r}: size must be [height, width], got {self.size!r}")
            object.__setattr__(self, "size", size)
        if self.range is not None:
            object.__setattr__(self, "range", tuple(int(v) for v in self.range))
        named = self.names is not None and self.range is not None and len(self.range) == 2
        counted = self.glob is not None and isinstance(self.count, int) and self.count > 0
        if named == counted:
            raise ConfigError(f"recipe group {self.folder!r}: give either `names` + `range: [first, last]` or "
                              "`glob` + `count`")

    @property
    def globs(self) -> tuple[str, ...]:
        """The glob patterns of a counted group (``()`` for a named one)."""
        if self.glob is None:
            return ()
        return (self.glob,) if isinstance(self.glob, str) else tuple(self.glob)

    @property
    def folders(self) -> tuple[str, ...]:
        """``folder`` then its ``aliases``, in the order they are tried."""
        return (self.folder, *self.aliases)

    def expected_names(self) -> list[str] | None:
        """The exact expected file names, or ``None`` for a counted group."""
        if self.names is None:
            return None
        lo, hi = self.range
        return [self.names.format(i=i) for i in range(lo, hi + 1)]

    @property
    def expected_count(self) -> int:
        return self.count if self.names is None else self.range[1] - self.range[0] + 1


@dataclass(frozen=True)
class Recipe:
    """A test set's recipe (see ``benchmarks/recipes/*.yaml`` for the meaning of each key)."""

    name: str
    title: str
    groups: tuple[Group, ...]
    key_suffix: str = ""
    crop: dict = field(default_factory=lambda: {"policy": CropPolicy.CENTER, "size": 512})
    seed: int = 0
    patterns: tuple[Pattern, ...] = tuple(Pattern)
    noise_profile: str = "default"
    iso_range: tuple[float, float] | None = None
    sensor: dict = field(default_factory=lambda: SensorParams().to_dict())
    degradation: dict = field(default_factory=lambda: {"scale": 4})
    save_dng: bool = False
    layout: str = "official"
    layout_title: str = "official download"

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("layout", "layout_title"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"recipe {self.name!r}: source.{name} must be a non-empty string")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"recipe {self.name!r}: seed must be an integer, got {self.seed!r}")
        for name in ("key_suffix", "noise_profile"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"recipe {self.name!r}: {name} must be a string, got {getattr(self, name)!r}")
        set_(self, "groups", tuple(g if isinstance(g, Group) else Group(**g) for g in self.groups))
        if not self.groups:
            raise ConfigError(f"recipe {self.name!r}: `source.groups` is empty")
        try:
            set_(self, "patterns", tuple(Pattern(p) for p in self.patterns))
        except ValueError as e:
            raise ConfigError(f"recipe {self.name!r}: {e}") from None
        crop = dict(self.crop)
        unknown = set(crop) - {"policy", "size"}
        if unknown or crop.get("policy") not in CropPolicy.ALL:
            raise ConfigError(f"recipe {self.name!r}: crop must be {{policy: center, size: N}} or {{policy: full}}, "
                              f"got {self.crop!r}")
        if crop["policy"] == CropPolicy.CENTER:
            size = crop.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 2 * self.scale or size % self.multiple:
                raise ConfigError(f"recipe {self.name!r}: crop.size must be a positive multiple of {self.multiple} "
                                  f"(even and divisible by the degradation scale {self.scale}), got {size!r}")
        else:
            crop.pop("size", None)
        set_(self, "crop", crop)
        if self.iso_range is not None:
            set_(self, "iso_range", tuple(float(v) for v in self.iso_range))
        self.synth_config(self.patterns[0], None, self.multiple)  # validate sensor/degradation/profile now

    @property
    def scale(self) -> int:
        return int(self.degradation.get("scale", 4))

    @property
    def multiple(self) -> int:
        """Crop sides are multiples of this: even (whole Bayer blocks) and divisible by the degradation scale."""
        return math.lcm(2, self.scale)

    @property
    def expected_count(self) -> int:
        return sum(g.expected_count for g in self.groups)

    def synth_config(self, pattern: Pattern, iso: float | None, crop: int) -> SynthConfig:
        """The :class:`~rawsynth.pipeline.SynthConfig` of one image: ``rddm`` mode, its own pattern and ISO."""
        iso_range = (iso, iso) if iso is not None else self.iso_range
        try:
            return SynthConfig(mode=Mode.RDDM, crop=crop, patterns=(pattern,), noise_profile=self.noise_profile,
                               iso_range=iso_range, sensor=dict(self.sensor), degradation=dict(self.degradation),
                               save_srgb=True, save_dng=self.save_dng)
        except (ConfigError, InputError) as e:
            raise ConfigError(f"recipe {self.name!r}: {e}") from None

    def iso_bounds(self) -> tuple[float, float]:
        """The ISO range images are spread over: ``iso_range``, else the noise profile's."""
        return self.iso_range or self.synth_config(self.patterns[0], None, self.multiple).profile().iso_range

    def to_dict(self) -> dict:
        """JSON-ready dict in the recipe file's layout; ``Recipe.from_dict(r.to_dict()) == r``."""
        d = to_dict(self)
        source = {k: d.pop(k) for k in ("groups", "key_suffix", "layout", "layout_title")}
        source["groups"] = [{k: v for k, v in g.items() if v not in (None, [])} for g in source["groups"]]
        return {"name": d.pop("name"), "title": d.pop("title"), "source": source, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "<recipe>") -> Recipe:
        """Build from a YAML mapping (:func:`rawsynth._config.from_mapping`); unknown keys raise
        :class:`ConfigError` naming them and ``where`` (the recipe file)."""
        try:
            if not isinstance(d, Mapping):
                raise ConfigError("a recipe must be a mapping")
            d = dict(d)
            source = d.pop("source", None)
            if not isinstance(source, Mapping) or "groups" not in source:
                raise ConfigError("a recipe needs `source: {groups: [...]}`")
            src = from_mapping(_Source, source, "source", what="recipe")
            misplaced = sorted(set(d) & {f.name for f in dataclasses.fields(_Source)})
            if misplaced:
                raise ConfigError(f"unknown recipe keys {misplaced} at the top level",
                                  fix=f"move {', '.join(misplaced)} under `source:`")
            for k in ("name", "title"):
                if not isinstance(d.get(k), str) or not d[k]:
                    raise ConfigError(f"`{k}` must be a non-empty string")
            if not isinstance(src.groups, list):
                raise ConfigError("source.groups must be a list of mappings")
            groups = tuple(from_mapping(Group, g, f"source.groups[{i}]", what="group")
                           for i, g in enumerate(src.groups))
            given = {k: v for k, v in dataclasses.asdict(src).items() if k != "groups" and v is not None}
            return from_mapping(cls, {**d, **given, "groups": groups}, what="recipe")
        except ConfigError as e:
            raise with_path(e, where, fix=e.fix) from None
        except TypeError as e:  # a value of the wrong kind inside a group (e.g. `range: 5`)
            raise ConfigError(str(e), path=where) from None


@dataclass(frozen=True)
class _Source:
    """The keys of a recipe's ``source:`` section (``None``: :class:`Recipe`'s default)."""

    groups: list
    key_suffix: str | None = None
    layout: str | None = None
    layout_title: str | None = None


def recipe_names() -> tuple[str, ...]:
    """The bundled synthetic test sets (``dnd`` is built by :mod:`benchmarks.dnd`)."""
    return BUILTIN


def layout_recipe_names(name: str) -> tuple[str, ...]:
    """The bundled recipes of test set ``name``, official layout first (e.g. ``realsr``, ``realsr-stablesr``)."""
    return (name, *LAYOUT_VARIANTS.get(name, ()))


def _bundled(name: str):
    return resources.files("benchmarks").joinpath("recipes", f"{name}.yaml")


def load_recipe_dict(name_or_path: str | Path) -> tuple[dict, str]:
    """The raw mapping of a bundled recipe (by name, e.g. ``"div2k-val"``) or a YAML file, and where it came
    from."""
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists():
        return load_yaml(p), str(p)
    bundled = _bundled(str(name_or_path))
    if not bundled.is_file():
        raise ConfigError(f"unknown benchmark {name_or_path!r}; the bundled ones are "
                          f"{', '.join((*BUILTIN, 'dnd'))} (or pass a recipe YAML file)")
    return load_yaml(bundled), f"benchmarks/recipes/{name_or_path}.yaml"


def load_recipe(name_or_path: str | Path, **overrides) -> Recipe:
    """Load a recipe; ``overrides`` replace top-level keys (e.g. ``crop={"policy": "center", "size": 256}``)."""
    d, where = load_recipe_dict(name_or_path)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe.from_dict(d, where)
