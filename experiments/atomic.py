"""Atomic file writes: results and checkpoints appear whole or not at all.

Every writer of the toolkit goes through :func:`write_atomic`, so an interrupted run never leaves a
half-written file behind; :func:`check_writable` tells before any work whether a write can succeed.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_writable", "write_atomic"]


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of a written file: what ``open(path, "w")`` would give (mkstemp's are 0600).
_FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: Path | str, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Parameters
    ----------
    path : Path or str
        Destination; its folder is created if needed. An existing destination must be a regular
        file (a folder, a device or a pipe is never replaced).
    write : callable
        Writes the content to the temporary path it is given.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        ``path`` exists and is not a regular file.
    """
    path = Path(path)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"{path} exists and is not a regular file; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: Path | str, folder: bool = False) -> None:
    """Check, before any work, that :func:`write_atomic` can write ``path`` (or files in it).

    Nothing is left behind: missing folders are not created, and the probe file is removed.

    Parameters
    ----------
    path : Path or str
        A file to be written, or with ``folder=True`` a folder to be created or written into.
        Missing folders on the way are allowed (they are created when the file is written).
    folder : bool
        ``path`` names a folder, not a file.

    Raises
    ------
    ValueError
        One line, starting with ``path``, saying what is in the way: ``path`` is a folder (a file
        was asked for), a file (a folder was asked for) or not a regular file; a folder on the way
        is a file; or the nearest existing folder refuses new files (with the system's reason).
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(f"{path} is a file; give a folder")
        if not folder and path.is_dir():
            raise ValueError(f"{path} is a folder; give a file name")
        if not folder and not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"{path} is not a regular file; give a file name")
    base = path if folder else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"{path}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".aif-probe-", suffix=".tmp")
    except OSError as err:
        raise ValueError(
            f"{path}: cannot create a file in {base} ({err.strerror or type(err).__name__})"
        ) from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
