"""Atomic writes leave files with the permissions a plain open() would give them."""

import os
import stat

from smoe.fileio import make_temporary


def test_temporary_file_follows_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        handle, name = make_temporary(tmp_path / "metrics.json")
        os.close(handle)
    finally:
        os.umask(previous)

    mode = stat.S_IMODE(os.stat(name).st_mode)
    assert mode == 0o644


def test_temporary_file_beside_target(tmp_path):
    handle, name = make_temporary(tmp_path / "cat.npy", suffix=".part")
    os.close(handle)

    assert os.path.dirname(name) == str(tmp_path)
    assert name.endswith(".part")
