"""Atomic file and folder writes: outputs appear whole or not at all.

A write that the file system refuses (no space left, read-only, no permission, a folder where the file should be)
is a user problem, not a bug: :func:`atomic_path` and :func:`atomic_dir` remove their temporary and raise
:class:`ksdiff.errors.KsdiffError` naming the output the user asked for (never the temporary).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ksdiff.errors import KsdiffError

#: errno -> what a refused write means to the user. Only these OSErrors become one-line user errors.
WRITE_ERRORS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system (or the process's file size limit)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "a folder of that name is in the way",
    errno.ENOTDIR: "a file is in the way where a folder should be",
    errno.EEXIST: "something of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_error(e: OSError, path: str | os.PathLike) -> KsdiffError:
    """The one-line user error for a refused write of ``path`` (``e.errno`` in :data:`WRITE_ERRORS`)."""
    reason = WRITE_ERRORS.get(e.errno or 0) or e.strerror or type(e).__name__
    return KsdiffError(f"cannot write this output: {reason}; nothing was written", path)


def is_refused_write(e: BaseException, *ours: Path) -> bool:
    """Whether ``e`` is a refused write of one of ``ours`` (paths, or files inside them; or no file named)."""
    if not isinstance(e, OSError) or e.errno not in WRITE_ERRORS:
        return False
    names = [n for n in (e.filename, e.filename2) if n is not None]
    if not names:
        return True  # e.g. a failed write() on an open file object
    for n in names:
        p = Path(os.fsdecode(n))
        if any(p == o or o in p.parents for o in ours):
            return True
    return False


@contextlib.contextmanager
def refused_write_as(path: str | os.PathLike) -> Iterator[None]:
    """Inside the block, an OSError refusing a write (``e.errno`` in :data:`WRITE_ERRORS`) becomes
    :func:`write_error` naming ``path``; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno in WRITE_ERRORS:
            raise write_error(e, path) from None
        raise


def make_dir(path: str | os.PathLike, name: str | os.PathLike | None = None) -> Path:
    """Create the folder ``path`` (and its parents); a refusal is a :class:`KsdiffError` naming ``name`` (default
    ``path``)."""
    path = Path(path)
    with refused_write_as(path if name is None else name):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as e:  # mkdir(exist_ok) says so when a file holds the folder's name
            raise NotADirectoryError(errno.ENOTDIR, e.strerror, e.filename) from None
    return path


def _make_parent(path: Path) -> None:
    make_dir(path.parent, name=path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary keeps ``path``'s suffix (or ``suffix``) so writers that pick a format by extension work.
    On any exception the temporary is removed and ``path`` is untouched; a refused write (ENOSPC, EROFS, EACCES,
    EISDIR, ... of the temporary or of ``path``) becomes a :class:`KsdiffError` naming ``path``.
    """
    path = Path(path)
    _make_parent(path)
    sfx = suffix if suffix is not None else "".join(path.suffixes)
    with refused_write_as(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{sfx}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_refused_write(e, tmp_path, path):
            raise write_error(e, path) from None  # type: ignore[arg-type]
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (removing an old one).

    On any exception the temporary folder is removed; a refused write inside it (or of ``path``) becomes a
    :class:`KsdiffError` naming ``path``.
    """
    path = Path(path)
    _make_parent(path)
    with refused_write_as(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_refused_write(e, tmp, path):
            raise write_error(e, path) from None  # type: ignore[arg-type]
        raise


def check_writable_dir(path: str | os.PathLike, name: str | os.PathLike | None = None) -> Path:
    """Make sure files can be created in the folder ``path`` before any work is spent on them.

    The folder need not exist yet (it is not created here): its nearest existing ancestor must be a folder
    in which a file can be created (tested by creating and removing an empty temporary file).

    Raises:
        KsdiffError: naming ``name`` (default ``path``): it is a file, a file is in the way of one of its parents,
            or the folder is not writable (read-only file system, no permission).
    """
    path = Path(path)
    name = path if name is None else name
    if path.exists() and not path.is_dir():
        raise KsdiffError("this is a file, not a folder; give a folder for the outputs", name)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise KsdiffError(f"cannot create the output folder: {probe} is a file", name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ksdiff-write-test.", dir=probe)
    except OSError as e:
        if e.errno in WRITE_ERRORS:
            where = "" if probe == path else f" ({probe})"
            raise KsdiffError(f"the output folder{where} is not writable: {WRITE_ERRORS[e.errno]}", name) from None
        raise
    os.close(fd)
    os.unlink(tmp)
    return path


def check_writable_file(path: str | os.PathLike) -> Path:
    """Make sure the file ``path`` can be written (atomically, beside itself) before any work is spent on it.

    Raises:
        KsdiffError: naming ``path``: it is a folder, or its folder cannot be created or written to.
    """
    path = Path(path)
    if path.is_dir():
        raise KsdiffError("this is a folder; give a file name for the output", path)
    check_writable_dir(path.parent, name=path)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
