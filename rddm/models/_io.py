"""Local-folder checks shared by the models' ``from_pretrained`` (nothing is ever downloaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import WeightsError

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")


def resolve_model_dir(path: str | os.PathLike, subfolder: str | None, default_subfolder: str | None,
                      class_names: tuple[str, ...], what: str, fix: str) -> tuple[Path, str | None]:
    """Find the diffusers model folder ``path[/subfolder]`` and check it holds a model of ``class_names``.

    When ``subfolder`` is ``None`` and ``path`` has no ``config.json`` but ``path/default_subfolder`` does, that
    subfolder is used (so a training output folder or a pipeline folder can be passed as is).

    Returns:
        ``(path, subfolder)`` to hand to ``ModelMixin.from_pretrained``.

    Raises:
        WeightsError: no such folder, no ``config.json``, another class, or no weight file.
    """
    root = Path(path)
    if not root.is_dir():
        raise WeightsError(f"no such {what} folder", path=root, fix=fix)
    if subfolder is None and not (root / "config.json").is_file() and default_subfolder is not None \
            and (root / default_subfolder / "config.json").is_file():
        subfolder = default_subfolder
    folder = root / subfolder if subfolder else root
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise WeightsError(f"not a {what} folder: no config.json"
                           + (f" (nor {default_subfolder}/config.json)" if default_subfolder and not subfolder else ""),
                           path=folder, fix=fix)
    try:
        name = json.loads(cfg.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"unreadable config.json ({e})", path=cfg, fix=fix) from None
    if name not in class_names:
        raise WeightsError(f"config.json describes a {name!r}, not a {what} ({' or '.join(class_names)})", path=cfg,
                           fix=fix)
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise WeightsError(f"no weights: expected {WEIGHT_FILES[0]}", path=folder, fix=fix)
    return root, subfolder
