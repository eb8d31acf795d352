"""Writing files so that a failure leaves nothing half-written and the result looks like any other file.

Every file and folder edgevit writes goes through a temporary name in the same folder and is
renamed into place when complete. Python's :mod:`tempfile` makes those private (0600 files,
0700 folders), and some converters do the same inside an artifact; left alone, a user's
artifacts, weights and reports would be unreadable to the group and other users, unlike every
other file they make. So whatever is renamed into place first gets the permissions the
user's umask gives a new file or folder.

* :func:`replacing`: a temporary path beside ``path`` for code that writes a file by name
  (a library's ``save(path)``), renamed onto ``path`` on success, removed on failure;
* :func:`write_text` / :func:`write_bytes`: the same for text / bytes;
* :func:`write_json` / :func:`read_json`: the one JSON format edgevit writes (two-space indent,
  a final newline: manifests, plans, deployments, reports) and a read that names a corrupt file;
* :func:`staging_dir`: a temporary folder to build an artifact in, with normal permissions;
  made inside :func:`signals_deferred` by a caller that must know of it before a signal can
  unwind (a SIGTERM between its creation and the caller's record of it left it behind);
* :func:`normal_modes`: give a finished tree normal permissions before it is installed;
* :func:`check_output_file` / :func:`check_writable`: prove an output file / folder can be
  written *before* the work that makes it (training, exporting, splitting, benchmarking), so a
  bad path costs nothing;
* :func:`file_sha256`: the digest a manifest records for a weights file or an artifact file;
* :func:`write_or_rescue`: write a finished result; when it still cannot be written where asked
  (the disk filled up, the folder was removed), write it to the temporary folder and say where.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

__all__ = ["check_output_file", "check_writable", "file_sha256", "foreign_files", "normal_modes", "read_json",
           "remove_stale_staging", "replacing", "signals_deferred", "staging_dir", "umask", "write_bytes", "write_json",
           "write_or_rescue", "write_text"]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (hex), read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, with normal permissions (a converter's model bytes)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, data: Any, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: two-space indent, keys in the order given,
    a final newline, the format of every manifest, plan and report edgevit writes.

    The JSON is streamed into a temporary file; if ``default`` (``json.dump``'s hook for values
    JSON has no type for) or anything else raises half-way, ``path`` is left as it was.

    Example:
        >>> write_json("out/result.json", {"top1": 91.5})  # doctest: +SKIP
    """
    with replacing(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, default=default)
        handle.write("\n")
    return Path(path)


def read_json(path: str | Path, hint: str = "") -> Any:
    """The JSON value in ``path``.

    Raises:
        ArtifactError: the file is missing, unreadable, not UTF-8 or not JSON; naming the path, what
            is wrong and ``hint`` (how to make it again, e.g. "deploy the plan again").
    """
    from edgevit.errors import ArtifactError

    path = Path(path)
    fix = f"; {hint}" if hint else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} does not exist{fix}") from exc
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt: not UTF-8 text ({exc.reason} at byte {exc.start}){fix}") from exc
    except OSError as exc:
        raise ArtifactError(f"{path} cannot be read: {exc.strerror or exc}{fix}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}{fix}") from exc


#: the signals edgevit's CLI unwinds on (SIGTERM is made to raise like Ctrl-C)
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, so that what it creates is recorded before
    a signal's exception can unwind (``job.staging = staging_dir(...)``). A signal that arrives
    meanwhile is noted and, when the block ends, handed to the handler that was in place (which
    raises ``KeyboardInterrupt``, or edgevit's CLI's termination). The handlers are swapped, not
    the signal mask: a signal to the process reaches whichever thread does not block it, and a
    converter's thread pools do not. Only the main thread can set handlers; elsewhere the block
    runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: pending.append(signum))
                for number in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])


def staging_dir(parent: str | Path, name: str, suffix: str = ".partial") -> Path:
    """A new hidden folder ``.NAME.PID.xxxx.partial`` in ``parent`` with normal permissions.

    Staging folders of the same name left by a process that no longer runs (killed before it
    could clean up) are removed first."""
    remove_stale_staging(parent, name, suffix)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=suffix, dir=parent))
    folder.chmod(0o777 & ~umask())
    return folder


def remove_stale_staging(parent: str | Path, name: str, suffix: str = ".partial") -> list[Path]:
    """Remove ``.NAME.PID.*.partial`` folders in ``parent`` whose process is gone; the removed ones."""
    import shutil

    removed = []
    for folder in Path(parent).glob(f".{name}.*{suffix}"):
        pid_text = folder.name[len(name) + 2:].split(".", 1)[0]
        if not folder.is_dir() or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        pass
    return True


def foreign_files(folder: str | Path) -> list[str]:
    """Files in an existing artifact ``folder`` that edgevit did not write (not ``manifest.json``
    and not in its manifest's file list): replacing the folder would delete them. All of them
    when the folder has no readable manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    try:
        listed = set(json.loads((folder / "manifest.json").read_text()).get("files") or {})
    except (OSError, ValueError, AttributeError):
        return present
    ours = {"manifest.json", "backend_choice.json"}  # edgevit.artifact.BACKEND_CHOICE_NAME: a record about the old file
    return [p for p in present if p not in ours and not any(p == f or p.startswith(f"{f}/") for f in listed)]


def check_writable(out: str | Path) -> Path:
    """Create the output folder ``out`` if needed and prove a folder can be made in it, before any
    work (the folder counterpart of :func:`check_output_file`).

    Raises:
        InvalidArgumentError: ``out`` is a file, or cannot be written.
    """
    from edgevit.errors import InvalidArgumentError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out {str(out)!r} is a file, not a folder; pass a folder for the artifacts")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".edgevit-write-check.", dir=out)
        os.rmdir(probe)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write artifacts to {str(out)!r}: {exc.strerror or exc}; pass a writable folder with --out"
        ) from exc
    return out


def check_output_file(path: str | Path, option: str) -> Path:
    """Refuse, before any work, an output file that cannot be written: its folder is made if
    missing and a file is created and removed in it.

    Raises:
        InvalidArgumentError: naming ``option``, the path, the reason and what to pass instead.
    """
    from edgevit.errors import InvalidArgumentError

    path = Path(path)
    if path.is_dir():
        raise InvalidArgumentError(f"{option} {str(path)!r} is a folder; pass a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot write {option} {str(path)!r}: {exc.strerror or exc}; pass a path in a "
                                   "writable folder") from exc
    return path


def write_or_rescue(path: str | Path, write: Callable[[Path], T]) -> T:
    """``write(path)`` for a finished result; if that fails, ``write`` into the temporary folder
    instead and raise an error that says where the result is.

    Raises:
        EdgeVitError: ``path`` could not be written; saying where the result was saved (or that
            it could not be).
    """
    try:
        return write(Path(path))
    except OSError as error:
        _rescue(path, write, error)


def _rescue(path: str | Path, write: Callable[[Path], object], error: OSError) -> NoReturn:
    from edgevit.errors import EdgeVitError

    folder = Path(tempfile.mkdtemp(prefix="edgevit-rescued."))
    normal_modes(folder)
    saved = folder / Path(path).name
    try:
        write(saved)
    except OSError as second:
        raise EdgeVitError(f"could not write {str(path)!r} ({error.strerror or error}), nor a copy in {folder} "
                           f"({second.strerror or second}); the result is lost") from error
    raise EdgeVitError(f"could not write {str(path)!r} ({error.strerror or error}); the finished result was saved to "
                       f"{saved} instead") from error
