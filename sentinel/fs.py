"""The I/O seam: every file operation of the package goes through here.

Nothing else in `sentinel` calls `os` for file work.  That gives one place
to map `OSError` onto the typed `StoreIOError` family (keeping errno and
path), and one place for tests to swap the operating system for a fault-
injecting or crash-simulating double, the way SQLite swaps its VFS::

    previous = fs.install(FaultyOS(...))
    try:
        ...
    finally:
        fs.install(previous)

`OS` holds the raw primitives, which raise `OSError`; the module-level
functions wrap them.  A double subclasses `OS` and overrides primitives.
`KeyboardInterrupt` and other `BaseException`s pass through untouched.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import time

from sentinel.errors import io_error

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
TEMP_SUFFIX = ".tmp"


class OS:
    """The real operating system.  Each method is one system call."""

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(path, flags | O_CLOEXEC, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fstat_size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def flock(self, fd: int, operation: int) -> None:
        fcntl.flock(fd, operation)


_os: OS = OS()


def install(impl: OS) -> OS:
    """Make `impl` the operating system for all later calls; return the
    previous one.  For tests."""
    global _os
    previous, _os = _os, impl
    return previous


def current() -> OS:
    """Return the operating system in use."""
    return _os


def open_fd(path: str, flags: int, mode: int = 0o644) -> int:
    try:
        return _os.open(path, flags, mode)
    except OSError as exc:
        raise io_error(exc, path) from exc


def close(fd: int, path: str) -> None:
    try:
        _os.close(fd)
    except OSError as exc:
        raise io_error(exc, path) from exc


def close_quietly(fd: int) -> None:
    """Close `fd` on a failure path, where a second error would only
    hide the first."""
    try:
        _os.close(fd)
    except OSError:
        pass


def write_all(fd: int, data: bytes, path: str) -> None:
    """Write every byte of `data`, looping over short writes."""
    view = memoryview(data)
    try:
        while view:
            written = _os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]
    except OSError as exc:
        raise io_error(exc, path) from exc


def pwrite_all(fd: int, data: bytes, offset: int, path: str) -> None:
    """Write every byte of `data` at `offset`, looping over short
    writes."""
    view = memoryview(data)
    try:
        while view:
            written = _os.pwrite(fd, view, offset)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]
            offset += written
    except OSError as exc:
        raise io_error(exc, path) from exc


def pread(fd: int, size: int, offset: int, path: str) -> bytes:
    try:
        return _os.pread(fd, size, offset)
    except OSError as exc:
        raise io_error(exc, path) from exc


def fsync(fd: int, path: str) -> None:
    try:
        _os.fsync(fd)
    except OSError as exc:
        raise io_error(exc, path) from exc


def fdatasync(fd: int, path: str) -> None:
    try:
        _os.fdatasync(fd)
    except OSError as exc:
        raise io_error(exc, path) from exc


def fsync_dir(path: str) -> None:
    """Make the names in directory `path` durable.

    Filesystems that cannot sync a directory answer EINVAL or ENOTSUP;
    there is nothing more we can do for them, so those are tolerated.
    """
    try:
        fd = _os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0), 0)
    except OSError as exc:
        raise io_error(exc, path) from exc
    try:
        _os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise io_error(exc, path) from exc
    finally:
        try:
            _os.close(fd)
        except OSError:
            pass


def ftruncate(fd: int, size: int, path: str) -> None:
    try:
        _os.ftruncate(fd, size)
    except OSError as exc:
        raise io_error(exc, path) from exc


def size(fd: int, path: str) -> int:
    try:
        return _os.fstat_size(fd)
    except OSError as exc:
        raise io_error(exc, path) from exc


def replace(source: str, target: str) -> None:
    try:
        _os.replace(source, target)
    except OSError as exc:
        raise io_error(exc, target) from exc


def unlink(path: str) -> None:
    try:
        _os.unlink(path)
    except OSError as exc:
        raise io_error(exc, path) from exc


def mkdir(path: str) -> None:
    try:
        _os.mkdir(path)
    except OSError as exc:
        raise io_error(exc, path) from exc


def listdir(path: str) -> list[str]:
    try:
        return sorted(_os.listdir(path))
    except OSError as exc:
        raise io_error(exc, path) from exc


def flock(fd: int, operation: int, path: str) -> None:
    try:
        _os.flock(fd, operation)
    except OSError as exc:
        raise io_error(exc, path) from exc


def exists(path: str) -> bool:
    """Whether `path` names anything (a metadata question, not I/O on
    store data, so it is not a fault-injection point)."""
    return os.path.lexists(path)


def kind(path: str) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (links included: never
    followed) or None when nothing is there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise io_error(exc, path) from exc
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "other"


def temp_name(target: str) -> str:
    """A unique temp-file name beside `target`.

    The name carries the writer's pid so a later process can tell a dead
    writer's leftover from a live writer's file in progress.
    """
    folder, base = os.path.split(target)
    token = secrets.token_hex(4)
    return os.path.join(folder, f".{base}.{os.getpid()}.{token}{TEMP_SUFFIX}")


_TEMP_NAME = re.compile(r"\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp")


def is_temp(name: str) -> bool:
    """Whether `name` has the exact form `temp_name` gives."""
    return _TEMP_NAME.fullmatch(name) is not None


def is_stale_temp(folder: str, name: str, max_age: float = 3600.0) -> bool:
    """Whether `name` is a temp file left by a dead or long-gone writer.

    Only names of the exact form `temp_name` gives count, so a user's own
    ``.notes.tmp`` is never taken for ours.
    """
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return False
    pid = int(match.group(2))
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    try:
        age = time.time() - os.lstat(os.path.join(folder, name)).st_mtime
    except FileNotFoundError:
        return False
    return age > max_age


_orphans: set[str] = set()


def _sweep_orphans() -> None:
    """Retry removing temp files whose removal failed earlier."""
    for temp in list(_orphans):
        try:
            _os.unlink(temp)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        _orphans.discard(temp)


def write_atomic(target: str, data: bytes) -> None:
    """Publish `data` at `target` durably, all or nothing.

    Temp file in the same folder (created exclusively), write, fsync,
    rename over the target, fsync the folder.  On any failure the temp
    file is removed and the target is untouched; a crash leaves either
    the old target or the new one, plus possibly a temp file that
    `Store.verify` reports and removes.
    """
    _sweep_orphans()
    temp = temp_name(target)
    fd = open_fd(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            write_all(fd, data, temp)
            fsync(fd, temp)
        finally:
            close(fd, temp)
        replace(temp, target)
    except BaseException:
        try:
            _os.unlink(temp)
        except FileNotFoundError:
            pass
        except OSError:
            # Removed at the next atomic write of this process (a live
            # process's temp files are otherwise kept for an hour).
            _orphans.add(temp)
        raise
    fsync_dir(os.path.dirname(target) or ".")
