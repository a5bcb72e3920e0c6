"""Writing a checkpoint folder safely: atomic publication, atomic replacement, storage failures as one error.
See ``docs/training.md``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["write_checkpoint_dir", "recover_checkpoints", "is_storage_error", "estimate_bytes", "folder_bytes",
           "storage_errors"]

_COMPLETE = "trainer_state.json"  # written last: a folder holding it is complete


def is_storage_error(e: BaseException) -> bool:
    """Whether ``e`` is a failure to write files (disk full, quota, I/O error, read-only file system) as the
    libraries that write checkpoints report it."""
    if isinstance(e, OSError):
        return True
    if type(e).__name__ == "SafetensorError":  # safetensors' Rust error (IoError while writing)
        return True
    if isinstance(e, RuntimeError):
        text = str(e)
        return any(s in text for s in ("inline_container", "PytorchStreamWriter", "file write failed",
                                       "No space left", "Disk quota"))
    return False


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def estimate_bytes(state_dicts: Iterable[dict], previous: Path | None = None) -> int:
    """About how many bytes a checkpoint takes: the size of ``previous`` (the newest complete checkpoint) if
    given, else the bytes of every tensor in ``state_dicts`` (nested dicts and lists are walked)."""
    if previous is not None and previous.is_dir():
        return folder_bytes(previous)

    def walk(x) -> int:
        if hasattr(x, "element_size") and hasattr(x, "numel"):
            return int(x.element_size() * x.numel())
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(walk(v) for v in x)
        return 0

    return sum(walk(sd) for sd in state_dicts)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def write_checkpoint_dir(root: Path, name: str, write: Callable[[Path], None],
                         needed: Callable[[], int]) -> Path:
    """Write ``root/name`` through ``write(tmp_folder)``, atomically (see ``docs/training.md``).

    Args:
        root: the checkpoints folder (created if missing).
        name: the checkpoint's folder name (``step-NNNNNN``).
        write: fills the (new, empty) temporary folder; the file it writes last marks it complete.
        needed: called only on a storage failure: about how many bytes the checkpoint needs.

    Returns:
        ``root/name``.

    Raises:
        CheckpointError: a storage failure (the message names ``root``, the space needed and the space free);
            ``root/name`` is left as it was (the previous copy, if any) and no ``name.tmp`` remains.
    """
    final, tmp, old = root / name, root / f"{name}.tmp", root / f"{name}.old"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)  # set aside in one step: never a half-deleted checkpoint under its name
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        if isinstance(e, Exception) and is_storage_error(e):
            raise _storage_error(root, f"checkpoint {name}", e, needed) from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def storage_errors(folder: Path, what: str, needed: Callable[[], int]) -> Iterator[None]:
    """Within the block, a storage failure (:func:`is_storage_error`) becomes the same one-line
    :class:`~rddm.errors.CheckpointError` as in :func:`write_checkpoint_dir` (``what``: what was being written)."""
    try:
        yield
    except Exception as e:
        if is_storage_error(e):
            raise _storage_error(folder, what, e, needed) from None
        raise


def _storage_error(root: Path, what: str, e: BaseException, needed: Callable[[], int]) -> CheckpointError:
    cause = (getattr(e, "strerror", None) if isinstance(e, OSError) else None) or str(e).strip().splitlines()[0]
    try:
        free = shutil.disk_usage(root if root.exists() else root.parent).free
        free_text = f", {_gib(free)} free there"
    except OSError:
        free_text = ""
    try:
        need_text = f"; it needs about {_gib(needed())}{free_text}"
    except Exception:  # noqa: BLE001 - the estimate is a courtesy; the error must still come out
        need_text = free_text and f";{free_text[1:]}"
    return CheckpointError(f"cannot write {what} ({type(e).__name__}: {cause}){need_text}", path=root,
                           fix="free disk space there (or point --out elsewhere), then rerun with --resume: "
                               "training continues from the newest complete checkpoint")


def recover_checkpoints(root: Path) -> list[str]:
    """Finish what a kill interrupted in ``root`` (a checkpoints folder): a ``step-N.old`` whose ``step-N`` is
    missing or incomplete is put back; one whose ``step-N`` is complete is deleted. Returns the names of the
    checkpoints put back."""
    restored = []
    if not root.is_dir():
        return restored
    for old in sorted(root.glob("step-*.old")):
        final = root / old.name[:-len(".old")]
        if (final / _COMPLETE).is_file():
            shutil.rmtree(old, ignore_errors=True)
        elif (old / _COMPLETE).is_file():
            shutil.rmtree(final, ignore_errors=True)
            os.replace(old, final)
            restored.append(final.name)
    return restored
