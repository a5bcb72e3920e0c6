"""Reading, writing and comparing the training configs of :mod:`rddm.config` (see ``docs/training.md``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rawsynth._config import from_mapping, load_yaml, to_dict, with_path
from rawsynth.errors import ConfigError
from rawsynth.io.atomic import atomic_output

__all__ = ["config_from_dict", "config_to_dict", "load_config", "save_config", "load_yaml", "replace_path",
           "config_diff"]


def config_from_dict(cls: type, d: dict | None, source: str | os.PathLike | None = None):
    """Build a config of class ``cls`` from a mapping, strictly.

    Args:
        cls: a config class of :mod:`rddm.config` (e.g. :class:`~rddm.config.DDNetTrainConfig`).
        d: the mapping (e.g. parsed YAML); missing keys keep the defaults, nested sections may be partial.
        source: the file ``d`` came from, named in error messages.

    Raises:
        ConfigError: an unknown key (named, with the valid ones), a wrong type or an invalid value.
    """
    try:
        return from_mapping(cls, d, None, convert=True)
    except ConfigError as e:
        if source is not None:
            raise with_path(e, source) from None
        raise


def config_to_dict(cfg) -> dict:
    """The config as plain YAML/JSON-ready data (tuples become lists)."""
    return to_dict(cfg)


def load_config(cls: type, path: str | os.PathLike | None = None, overrides: dict | None = None):
    """Read a config of class ``cls`` from a YAML file (``None``: the defaults), then apply ``overrides``.

    ``overrides`` maps dotted keys to values (``{"data.shards": [...], "max_steps": 10}``); a ``None`` value
    leaves the key alone.
    """
    d = load_yaml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = d
        *parents, last = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {} if node.get(p) is None else node[p]
            node = node[p]
        node[last] = value
    return config_from_dict(cls, d, source=path)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (every field), atomically."""
    import yaml

    text = f"# {type(cfg).__name__} (resolved: every field, defaults filled in)\n"
    text += yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None, width=110)
    with atomic_output(Path(path)) as tmp:
        Path(tmp).write_text(text)


def replace_path(cfg, dotted: str, value):
    """A copy of ``cfg`` with the (dotted) field replaced, e.g. ``replace_path(cfg, "data.shards", (...))``."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})


def config_diff(a, b, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two configs of the same class."""
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va) and dataclasses.is_dataclass(vb):
            out += config_diff(va, vb, f"{prefix}{f.name}.")
        elif va != vb:
            out.append(f"{prefix}{f.name}")
    return out
