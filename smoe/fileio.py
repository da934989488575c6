"""Temporary files for atomic writes that end up with ordinary permissions.

``tempfile.mkstemp`` creates files readable by their owner only (mode 0600). A result, checkpoint or
downloaded data file is renamed into place from such a file, so without a chmod it would stay
private, and a shared data cache or results folder would be unreadable to the rest of a group.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it, so set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temporary(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a temporary file beside ``target`` with the mode a plain ``open`` would give it.

    Returns the open file descriptor and the file's path, like ``tempfile.mkstemp``.
    """
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.chmod(name, 0o666 & ~_umask())
    return handle, name
