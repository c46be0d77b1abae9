"""Reading a config file or a ``${file:...}`` secret: regular files only, and never more than a bound.

A FIFO given as ``--config-dir`` or ``${file:/path}`` blocked the loader for ever (and with it every later
reload, and SIGTERM); ``/dev/zero`` read until MemoryError. Like sshd with its host keys and authorized_keys,
probe reads only regular files: it opens without blocking (so a FIFO with no writer, or a device, returns at
once), checks what it opened with ``fstat``, and reads at most ``limit`` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class UnreadableFile(ValueError):
    """The message says what is wrong with the file, without naming it (callers add the path)."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The contents of ``path``, a regular file of at most ``limit`` bytes. Raises :class:`UnreadableFile`,
    or OSError (missing, permission denied)."""
    _regular(os.stat(path))  # before opening: opening some devices has effects (a tape rewinds)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _regular(os.fstat(fd))  # what was opened, not what was looked at: it may have been swapped
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise UnreadableFile(f"is larger than {_size(limit)}")
    return b"".join(chunks)


def _regular(st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    raise UnreadableFile(f"is {kind}; probe reads only regular files")


def _size(limit: int) -> str:
    return f"{limit // 1024**2} MiB" if limit >= 1024**2 else f"{limit // 1024} KiB"
