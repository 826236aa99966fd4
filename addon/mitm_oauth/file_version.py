"""Noticing that a file was edited or replaced, without reading it."""

from __future__ import annotations

import os

FileVersion = tuple[int, int, int]
"""A file's inode, size and modification time."""


def file_version(path: str) -> FileVersion | None:
    """What changes when `path` is edited or replaced; None when it cannot be seen.

    A file renamed over another changes the inode even within one clock tick.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
