"""The output folder of ``rawsynth generate``: ``manifest.json``, finished-shard checks, leftovers of killed runs.

Split out of :mod:`rawsynth.generate`, which re-exports every name here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import ConfigError, InputError
from .generate_plan import ShardTask
from .io.atomic import atomic_output

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .pipeline import SynthConfig
    from .sources import Source
    from .storage import RemoteOut

__all__ = ["MANIFEST", "load_manifest"]

MANIFEST = "manifest.json"


def load_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The ``manifest.json`` of an output folder or fsspec URL, ``None`` when there is none."""
    from .storage import is_url, url_to_fs

    if is_url(out_dir):
        fs, root = url_to_fs(out_dir)
        p = f"{out_dir.rstrip('/')}/{MANIFEST}"
        try:
            return json.loads(fs.cat_file(f"{root.rstrip('/')}/{MANIFEST}"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(p, "unreadable manifest", str(e), hint="remove it or use --overwrite") from None
    p = Path(out_dir) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(p, "unreadable manifest", str(e), hint="remove it or use --overwrite") from None


def _identity(config: SynthConfig, seed: int, shard_size: int, plan: list[ShardTask],
              sources: Sequence[Source]) -> dict:
    return {"format": "rawsynth-shards", "format_version": config.format_version, "version": __version__,
            "config": config.to_dict(), "seed": seed, "shard_size": shard_size,
            "num_samples": sum(len(t.refs) for t in plan), "inputs": [s.name for s in sources]}


def _make_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if not out.exists():
        try:
            out.mkdir(parents=True)
        except FileExistsError:  # made meanwhile by someone else: fine if it is a folder
            if not out.is_dir():
                raise ConfigError(f"--out {out} exists and is not a folder") from None
        except OSError as e:
            raise ConfigError(f"--out {out} cannot be created: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} is not writable; choose another folder or fix its permissions")


def _prepare_out_dir(out: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    """Check (and with ``overwrite`` empty) the locked output folder for this run."""
    existing = load_manifest(out)
    ours = list(out.glob("shard-*.tar")) + list(out.glob("shard-*.stats.json"))
    if overwrite:
        for p in ours + list(out.glob("shard-*.tmp")) + list(out.glob(".shard-*.tmp")) + [out / MANIFEST]:
            p.unlink(missing_ok=True)
        return
    if existing is not None:
        old = {k: existing.get(k) for k in identity}
        if old != identity:
            diff = sorted(k for k in identity if old.get(k) != identity[k])
            raise ConfigError(f"{out} holds a different dataset (manifest differs in {diff}); use a new --out, "
                              "or --overwrite to replace it")
        if not resume:
            raise ConfigError(f"{out} already holds this dataset; pass --resume to finish it or --overwrite "
                              "to regenerate it")
    elif ours and not resume:
        raise ConfigError(f"{out} holds shards but no manifest; use a new --out or --overwrite")
    for p in list(out.glob("*.tmp")) + list(out.glob(".*.tmp")):  # leftovers of a killed run
        p.unlink(missing_ok=True)


def _done(out: Path, task: ShardTask) -> dict | None:
    """The stats of a finished, intact shard (stats file present, tar present with the recorded size and
    SHA-256), else None."""
    from .shards import sha256_file

    sp, tp = out / f"{task.name}.stats.json", out / f"{task.name}.tar"
    if not (sp.exists() and tp.exists()):
        return None
    try:
        stats = json.loads(sp.read_text())
        if stats.get("bytes") != tp.stat().st_size or stats.get("sha256") != sha256_file(tp):
            return None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return stats


def _has_stats(out: Path, task: ShardTask) -> bool:
    return (out / f"{task.name}.stats.json").exists()


def _write_manifest(out: Path, identity: dict, plan: list[ShardTask], results: dict[str, dict],
                    publish: RemoteOut | None = None) -> None:
    shards = []
    for t in plan:
        r = results.get(t.name)
        shards.append({"name": f"{t.name}.tar", "planned": len(t.refs),
                       "count": r["count"] if r else None, "failures": len(r["failures"]) if r else None,
                       "bytes": r["bytes"] if r else None, "sha256": r["sha256"] if r else None})
    manifest = dict(identity, complete=len(results) == len(plan), shards=shards)
    with atomic_output(out / MANIFEST) as tmp, open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    if publish is not None:
        publish.push_manifest(out)


def _remove_tmp(out: Path) -> None:
    for p in list(out.glob("shard-*.tmp")) + list(out.glob(".shard-*.tmp")):
        p.unlink(missing_ok=True)
