"""One run at a time per output folder: ``OUT/.rawsynth.lock`` (exclusive, ``flock``-held, stale locks of dead
local runs taken over). See ``docs/reliability.md``."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path

from .errors import ConfigError

__all__ = ["LOCK_NAME", "RunLock"]

LOCK_NAME = ".rawsynth.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """Exclusive lock of ``folder`` for one run (a context manager; released on any exit, also an exception).

    Args:
        folder: the output folder (must exist).
        what: how messages name the command (``"rawsynth generate"``).

    Raises (on enter):
        ConfigError: another live run holds the folder (PID and host named), or a lock of another host is
            there (with the fix: delete the lock file once no run on that host uses the folder).
    """

    def __init__(self, folder: str | os.PathLike, what: str = "rawsynth generate"):
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self.took_over: dict | None = None

    def _read(self) -> dict:
        try:
            d = json.loads(self.path.read_text())
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: dict, why: str) -> ConfigError:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        started = holder.get("started")
        since = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
        return ConfigError(f"{self.path.parent} is in use by another {self.what} run (PID {pid} on host {host}"
                           f"{since}){why}")

    def _create(self, me: dict) -> int | None:
        """Create the lock file, locked and filled in; ``None`` if one is there already."""
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            try:
                os.link(tmp, self.path)
                return fd
            except FileExistsError:
                os.close(fd)
                return None
            except OSError:  # no hard links here (some network or FUSE file systems): create it exclusively
                os.close(fd)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            return fd
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 3)}
        for _ in range(3):
            fd = self._create(me)
            if fd is None:
                self._check_holder()  # raises, or removed a stale lock: try again
                continue
            self._fd = fd
            return self
        raise self._refuse(self._read(), "; wait for it to finish")

    def _check_holder(self) -> None:
        holder = self._read()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._refuse(holder, "; wait for it to finish, or stop it first") from None
                raise
            # nobody holds the flock: the holder is gone, or it is on another host (flock may not cross hosts)
            pid, host = holder.get("pid"), holder.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid) or not holder:
                with suppress(FileNotFoundError):  # (another run may have removed it meanwhile)
                    if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                        os.unlink(self.path)  # stale: its holder died (SIGKILL, power loss) without releasing it
                self.took_over = holder
                print(f"{self.what}: removed the stale lock of process {pid} on {host} (it is no longer "
                      f"running): {self.path}", file=sys.stderr)
                return
            if host == socket.gethostname():
                raise self._refuse(holder, "; wait for it to finish, or stop it first")
            raise self._refuse(holder, f"; this host cannot tell whether that run is still going: if no run on "
                                       f"{host} uses this folder, delete {self.path} and retry")
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with suppress(OSError):
            os.unlink(self.path)
        with suppress(OSError):
            os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
