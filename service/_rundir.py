"""The private MariaDB server's run directory (its socket, pid file and temporary files).

Made under the temporary directory with a lock inside that its owner holds, and its server with
it, as long as either lives; removed by its owner. A directory whose owner was killed before it
could remove it (SIGKILL, a power cut) is removed by the next start of any service of this user,
which finds its lock free. A directory without the lock (made by an earlier version) is left.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "orders-mariadb-"
LOCK = "owner.lock"


class RunDir:
    """A new run directory, held until `remove()`; `lock` is the descriptor to pass to the server."""

    def __init__(self) -> None:
        remove_abandoned()
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX))  # short: socket paths are limited
        unnamed = self.path / f".{LOCK}.new"
        self.lock = os.open(unnamed, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        os.write(self.lock, f"pid {os.getpid()}\n".encode())
        # Named only once held: a lock of that name that is free is one whose holders are gone.
        os.rename(unnamed, self.path / LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.lock)


def remove_abandoned() -> list[Path]:
    """Removes this user's run directories whose lock nobody holds any more; returns them."""
    parent = Path(tempfile.gettempdir())
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            fd = os.open(Path(entry.path) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its service or its server still runs
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed
