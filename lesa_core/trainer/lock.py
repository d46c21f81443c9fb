"""One process at a time on a data folder: ``lesa collect`` and ``lesa train`` hold an exclusive lock on
``DATA_DIR/lesa.lock`` (``flock``) while they collect and train, so a second run on the same folder gets
a clear :class:`~lesa_core.errors.TrainingError` instead of racing the first over shards and checkpoints.

The lock is the kernel's: it is released when the holder exits, also by ``kill -9``, so a stale lock
file never blocks anyone. The file is removed on a clean release; a waiter that opened the file just
before it was removed notices (its inode is gone) and tries again. Under ``torchrun`` only the main
process locks (the ranks of one job share the folder by design). POSIX only (``fcntl``); elsewhere
nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lesa_core.errors import TrainingError

LOCK_FILE = "lesa.lock"


@contextmanager
def data_dir_lock(root: str | Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of the data folder ``root`` (created if missing; removed again on exit if
    it was created here and is still empty).

    :param enabled: ``False`` locks nothing (the non-main ranks of a process group).
    :raises TrainingError: if another process holds it, naming that process.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        enabled = False
    root = Path(root)
    if not enabled:
        yield
        return
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = -1
    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                fd = -1
                raise TrainingError(
                    f"another lesa process{holder} is collecting or training in the data folder '{root}'; wait "
                    "for it to finish, or use another --data-dir (training.data_dir)"
                ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
            fd = -1
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if fd >= 0:
            path.unlink(missing_ok=True)  # before unlocking: a waiter then sees a removed inode
            os.close(fd)
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file, if it names one."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""
