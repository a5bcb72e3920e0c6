"""The one config system: dataclass ⇄ mapping ⇄ YAML (:func:`from_mapping`, :func:`load_yaml`, :func:`to_dict`,
:class:`ConfigMixin`), every fault a ``ConfigError``. Cheap to import. See ``docs/architecture.md``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Literal

from .errors import ConfigError

__all__ = ["from_mapping", "load_yaml", "to_dict", "ConfigMixin"]


def to_dict(v):
    """Enum members → values, tuples → lists, mappings and nested dataclasses → dicts (recursively)."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, (tuple, list)):
        return [to_dict(x) for x in v]
    if isinstance(v, dict):
        return {k: to_dict(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_dict(getattr(v, f.name)) for f in dataclasses.fields(v)}
    return v


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _label(where: str | None) -> str:
    return f"section '{where}'" if where else "the config"


def _keys(kind: str, what: str | None, keys: list, where: str | None) -> str:
    """``unknown key(s) [...] in section 'x'``, or ``unknown recipe keys [...]`` when ``what`` names the mapping."""
    if what is None:
        return f"{kind} key(s) {keys} in {_label(where)}"
    return f"{kind} {what} keys {keys}" + (f" in section '{where}'" if where else "")


def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation this module cannot resolve: no nested building by type
        return {}


def _dataclass_type(tp):
    """The dataclass in annotation ``tp`` (``X``, ``X | None``), else ``None``."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def from_mapping(cls: type, mapping: Mapping | object, where: str | None = None, *, base: object = None,
                 convert: bool = False, init: bool = False, required: tuple[str, ...] = (),
                 what: str | None = None):
    """Build dataclass ``cls`` from ``mapping``, strictly.

    Args:
        cls: a dataclass (frozen or not); its ``__post_init__`` validates the values.
        mapping: a mapping (parsed YAML/JSON) or an instance of ``cls`` (returned as is).
        where: the dotted section this mapping is (``"first.kernel"``), named in messages; ``None``: the top.
        base: an instance whose values the keys left out keep (default: ``cls()`` when every field has a
            default; otherwise every field without a default must be given).
        convert: check and convert each value to its annotated type (:func:`convert`); without it the class's
            own ``__post_init__`` does all the checking.
        init: build with ``cls(**given)``, the keys left out taking the field defaults, instead of replacing
            fields of a default instance: for a class whose default instance is not valid (e.g.
            :class:`~rawsynth.cameras.CameraConfig`, which needs ``names`` or ``virtual``).
        required: keys that must be given although their fields have defaults (listed when missing).
        what: what the mapping is (``"RDDM config"``, ``"recipe"``), named in the unknown/missing-key messages.

    Raises:
        ConfigError: not a mapping, unknown keys (named with the valid ones), missing required keys, a wrong
            type or an invalid value (named with its dotted key).
    """
    if mapping is None:
        mapping = {}
    if isinstance(mapping, cls):
        return mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{_label(where)} must be a mapping, got {type(mapping).__name__}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    unknown = sorted(str(k) for k in mapping if k not in names)
    if unknown:
        dotted = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        raise ConfigError(f"{_keys('unknown', what, unknown, where)}; valid keys are {names}",
                          fix=f"remove or rename {dotted}")
    needed = set(required) | ({f.name for f in fields if _required(f)} if base is None else set())
    missing = [n for n in names if n in needed and n not in mapping]
    if missing:
        raise ConfigError(_keys("missing", what, missing, where))
    if base is None and not init and not any(_required(f) for f in fields):
        base = cls()
    hints = _hints(cls)
    kwargs = {}
    for f in fields:
        name = f.name
        if name not in mapping:
            continue
        key = f"{where}.{name}" if where else name
        value, tp = mapping[name], hints.get(name)
        current = getattr(base, name) if base is not None else _default(f)
        sub = _dataclass_type(tp) if tp is not None else None
        if sub is None and dataclasses.is_dataclass(current):
            sub = type(current)
        if sub is not None and isinstance(value, Mapping):
            sub_base = current if dataclasses.is_dataclass(current) else None
            kwargs[name] = from_mapping(sub, value, key, base=sub_base, convert=convert)
        elif convert and tp is not None:
            kwargs[name] = convert_value(value, tp, key)
        else:
            kwargs[name] = value
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as e:
        if where is None or e.message.startswith(where):
            raise
        raise ConfigError(f"{where}: {e.message}", path=e.path, fix=e.fix) from None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert_value(value, tp, where: str):
    """Check and convert a YAML value to the annotated type ``tp`` (tuples from lists, ints to floats, enums from
    their values); raise :class:`ConfigError` naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is none of "
                          f"{[_type_name(a) for a in args]}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) and args == (str, Ellipsis):
            value = [value]  # one path instead of a list of them
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        return tuple(convert_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where, convert=True)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{where} must be one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in a config class, not a user error


def load_yaml(path: str | os.PathLike, fix: str = "check the --config path") -> dict:
    """Read a YAML (or JSON) file holding a mapping; an empty file is ``{}``.

    Raises:
        ConfigError: the file cannot be read, is not valid YAML, or its top level is not a mapping; the error's
            ``path`` is the file and ``fix`` says what to do.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the config ({getattr(e, 'strerror', None) or e})", path=p, fix=fix) from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML ({e})", path=p, fix="fix the syntax") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(d).__name__}", path=p,
                          fix="write the config as `key: value` lines")
    return d


def with_path(e: ConfigError, path, fix: str = "edit the config file") -> ConfigError:
    """``e`` re-raised as naming ``path`` (kept if it names one already)."""
    return ConfigError(e.message, path=e.path or path, fix=e.fix or fix)


class ConfigMixin:
    """``to_dict``/``from_dict``/``to_json``/``from_json``/``from_yaml`` of a config or params dataclass.

    ``from_dict`` is :func:`from_mapping` with the class's ``_CONVERT`` (type conversion by annotations, off by
    default: the class validates in ``__post_init__``).
    """

    _CONVERT = False

    def to_dict(self) -> dict:
        """JSON/YAML-ready nested dict (enums as strings, tuples as lists)."""
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d, where: str | None = None):
        """Inverse of :meth:`to_dict`: unknown keys raise :class:`ConfigError` naming them; keys with defaults
        may be left out."""
        return from_mapping(cls, d, where, convert=cls._CONVERT)

    @classmethod
    def from_json(cls, s: str):
        return cls.from_dict(json.loads(s))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike):
        """Read a YAML mapping (an empty file means the defaults); every fault is a :class:`ConfigError` naming
        the file (and the dotted key)."""
        d = load_yaml(path)
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise with_path(e, path) from None
