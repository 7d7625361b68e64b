"""Files the user names for output (`--dot FILE`, and `-` for stdout), written safely.

A regular file is written to a temporary file beside it and renamed over it, so a full
disk or a crash never leaves a torn file or destroys the previous good one, and processes
writing the same path each leave a whole file. A FIFO or a device is written in place, but
never waited on: a FIFO nobody reads is an error, not a hang. Every failure is a `usage`
error naming the option; nothing here knows what the text means.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile

from .errors import GradcalcError, escape_text


def check_writable(path: str, option: str):
    """Refuse, before any work, a path that cannot be written (SPEC section 8)."""
    if path == "-":
        return
    where = os.path.dirname(path) or "."     # never abspath: the working directory may be gone
    if os.path.isdir(path) or not os.path.isdir(where) or not os.access(where, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise GradcalcError("usage", f"{option}: cannot write to {_q(path)}")


def write_text(path: str, text: str, option: str):
    """Write `text` to `path` whole (`-` is stdout)."""
    if path == "-":
        sys.stdout.write(text)
        return
    write_bytes(path, text.encode("utf-8"), option)


def write_bytes(path: str, data: bytes, option: str):
    """Write `data` to the file `path` whole."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    try:
        if mode is not None and not stat.S_ISREG(mode):
            _write_special(path, data)
        else:
            _write_replacing(path, data)
    except OSError as exc:
        reason = "nobody is reading it" if exc.errno == errno.ENXIO else (
            exc.strerror or type(exc).__name__)
        raise GradcalcError("usage", f"{option}: cannot write to {_q(path)}: {reason}")


def _write_replacing(path: str, data: bytes):
    where = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=where, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _mode_for(path: str) -> int:
    """The permissions `open()` would give: the old file's, else 0666 less the umask (a
    temporary file starts at 0600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write_special(path: str, data: bytes):
    """A FIFO or device: opened without blocking (ENXIO when a FIFO has no reader)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _q(text: str) -> str:
    return "'" + escape_text(text)[:200] + "'"
