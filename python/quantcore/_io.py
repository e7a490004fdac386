"""File writing shared by everything that saves: never a half-written file at the target path."""

from __future__ import annotations

import os
import tempfile
from typing import Callable


def replace_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Run write(tmp) on a temporary file beside `path`, then rename it to `path`.

    A failure (in write or anywhere before the rename) removes the temporary file and leaves
    whatever was at `path` untouched. mkstemp creates the file with mode 0600; it gets the mode a
    plain open() would give (0666 less the umask) before the rename, so the result is readable
    as any other file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".quantcore-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
