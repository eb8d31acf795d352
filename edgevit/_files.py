"""Writing files so that a failure leaves nothing half-written and the result looks like any other file.

Every file and folder edgevit writes goes through a temporary name in the same folder and is
renamed into place when complete. Python's :mod:`tempfile` makes those private (0600 files,
0700 folders), and some converters do the same inside an artifact; left alone, a user's
artifacts, weights and reports would be unreadable to the group and other users, unlike every
other file they make. So whatever is renamed into place first gets the permissions the
user's umask gives a new file or folder.

* :func:`replacing`: a temporary path beside ``path`` for code that writes a file by name
  (a library's ``save(path)``), renamed onto ``path`` on success, removed on failure;
* :func:`write_text`: the same for text;
* :func:`staging_dir`: a temporary folder to build an artifact in, with normal permissions;
* :func:`normal_modes`: give a finished tree normal permissions before it is installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["normal_modes", "replacing", "staging_dir", "umask", "write_text"]


def umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_modes(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder and everything under it) the permissions a new file or
    folder gets from the umask; executable files stay executable. Symbolic links are left alone."""
    mask = umask()
    path = Path(path)
    paths = [path] if not path.is_dir() else [path, *path.rglob("*")]
    for item in paths:
        if item.is_symlink():
            continue
        if item.is_dir():
            item.chmod(0o777 & ~mask)
        else:
            executable = item.stat().st_mode & 0o111
            item.chmod((0o777 if executable else 0o666) & ~mask)


@contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; once the block finishes, it becomes ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        normal_modes(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, with normal permissions."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def staging_dir(parent: str | Path, name: str, suffix: str = ".partial") -> Path:
    """A new hidden folder ``.NAME.xxxx.partial`` in ``parent`` with normal permissions."""
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=suffix, dir=parent))
    folder.chmod(0o777 & ~umask())
    return folder
