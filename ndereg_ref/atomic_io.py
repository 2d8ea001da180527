"""Atomic file writes: a reader (or an interrupted run) sees the old file or the new one, never half of one.

Every file the package writes that someone may rely on later — traces, ``results.json``, tables, plots,
``docs/results.md`` — goes through these helpers: the content is written to a temporary file in the same
directory, flushed and fsynced, then moved over the target with :func:`os.replace`, which POSIX and
Windows guarantee to be atomic within one file system.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path"]


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on normal exit move it over ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.  ``suffix`` keeps an
    extension for writers that look at it (matplotlib's ``savefig`` picks the format from ``.png``).

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> target = os.path.join(d, "x.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(target).read()
    'done'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # The real extension stays last (".x.png.tmp" would make matplotlib guess the format "tmp").
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=directory
    )
    os.close(fd)
    # mkstemp creates mode 0600; give the file the mode a plain open() would (or the old file's mode).
    if os.path.exists(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # make the bytes durable before the rename makes them visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory + ``os.replace``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same directory + ``os.replace``).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> atomic_write_text(p, "{}")
    >>> open(p).read()
    '{}'
    """
    atomic_write_bytes(path, text.encode(encoding))
