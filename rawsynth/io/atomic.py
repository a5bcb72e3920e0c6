"""Atomic file output: write next to the destination, then move into place, so a crash, a full disk or an
exception never leaves a half-written file under the final name. See ``docs/io.md``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; on success move it onto ``path`` with :func:`os.replace`.

    On any exception the temporary file is removed and ``path`` is left untouched. The temporary name
    is hidden (leading dot) and unique per call, so parallel writers never collide.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
