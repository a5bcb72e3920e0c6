"""Per-sample integrity: the SHA-256 of every member of every sample, recorded in the shard's stats file and
checked by the training reader. See ``docs/format.md``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

from ..errors import InputError

__all__ = ["MEMBER_CHECKSUMS", "member_checksums", "stats_path", "load_member_checksums", "verify_sample"]

#: The stats key holding the member checksums.
MEMBER_CHECKSUMS = "member_sha256"


def member_checksums(samples: Iterable[dict]) -> dict[str, dict[str, str]]:
    """``{key: {field: sha256 hex}}`` of encoded samples (``{"__key__": KEY, FIELD: bytes}``; ``__`` fields are
    not members and are left out)."""
    return {s["__key__"]: {f: hashlib.sha256(v).hexdigest() for f, v in sorted(s.items()) if not f.startswith("__")}
            for s in samples}


def stats_path(shard: str | os.PathLike) -> str:
    """The stats sidecar of a shard: ``.../shard-NNNNNN.tar`` → ``.../shard-NNNNNN.stats.json``."""
    shard = os.fspath(shard)
    return (shard[:-4] if shard.endswith(".tar") else shard) + ".stats.json"


def load_member_checksums(shard: str | os.PathLike) -> dict[str, dict[str, str]] | None:
    """The member checksums recorded for the shard ``shard`` (a path or an fsspec URL), or ``None`` when there
    are none (no stats sidecar, as for shards written by :func:`rawsynth.shards.write_shard` alone, or stats of an
    older version).

    Raises:
        InputError: the sidecar exists but cannot be read or parsed (reason ``"unreadable"``).
    """
    from ..storage import open_binary

    p = stats_path(shard)
    try:
        with open_binary(p) as f:
            stats = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise InputError(p, "unreadable", str(e), hint="re-generate the shard (rawsynth generate --resume)") from None
    table = stats.get(MEMBER_CHECKSUMS) if isinstance(stats, dict) else None
    return table if isinstance(table, dict) else None


def verify_sample(sample: dict, recorded: dict[str, dict[str, str]], name: str) -> None:
    """Check an encoded sample against its shard's recorded member checksums.

    Raises:
        InputError: reason ``"checksum mismatch"`` naming the member (``name`` is how the sample is called).
    """
    key = sample.get("__key__")
    want = recorded.get(key)
    hint = "the shard is damaged; re-generate it (rawsynth generate --resume redoes it)"
    if want is None:
        raise InputError(name, "checksum mismatch", f"sample {key!r} is not recorded in its shard's stats",
                         hint=hint)
    fields = {f for f in sample if not f.startswith("__")}
    if fields != set(want):
        raise InputError(name, "checksum mismatch", f"members {sorted(fields)} differ from the recorded "
                         f"{sorted(want)}", hint=hint)
    for field in sorted(fields):
        got = hashlib.sha256(sample[field]).hexdigest()
        if got != want[field]:
            raise InputError(name, "checksum mismatch", f"member {key}.{field} has SHA-256 {got[:16]}…, its "
                             f"shard's stats record {want[field][:16]}…", hint=hint)
