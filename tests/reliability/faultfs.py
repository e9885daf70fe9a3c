"""Operating-system doubles for `sentinel.fs`: faults and power loss.

Every file operation of `sentinel` goes through `sentinel.fs`, whose raw
primitives live on one `fs.OS` instance that `fs.install` swaps.  This
module provides two doubles for it (SQLite's fault VFS and crash VFS,
LevelDB's fault-injection Env):

`FaultOS`
    Passes every call to a base OS, counts the calls that match a filter
    (operation kinds, a path pattern), and makes the K-th matching call
    (once, or every call from K on) fail with an `OSError` of a chosen
    errno, write only part of its bytes (a short write), raise
    `KeyboardInterrupt`, or end the process with ``os._exit(137)``.  It
    keeps the trace of every call, so a test can also count syncs.

`CrashOS`
    Passes every call to the real OS on a real temporary folder and
    records each operation that changes the disk (creates, renames,
    unlinks, mkdirs, writes, truncations, syncs) with its bytes.  A
    `DiskModel` replays that trace and builds the disk image as of a
    power loss after any operation, under the usual model:

    - a file's content is what it held at its last fsync/fdatasync; the
      bytes written since are dropped, or the file keeps its new size
      with the unsynced region zero-filled or garbage-filled, or the
      unsynced writes are kept as a torn prefix, or each unsynced 4 KiB
      page independently keeps its new or old bytes (writeback and disk
      caches do not keep the order of unsynced writes).  Overwrites of
      already synced bytes (frames written over preallocated zeros)
      revert to the synced bytes.  A failed fsync drops the dirty bytes
      for good (Linux marks the pages clean): a later successful fsync
      does not write them.
    - a name operation (create, rename, unlink, mkdir) is durable once
      its parent folder was fsynced after it; each one not yet durable is
      independently kept or rolled back (all subsets up to `SUBSET_LIMIT`
      operations, a random sample beyond).  A rename is atomic: its
      target names either the old or the new file, never a mix.
    - mode ``keep`` is a process crash: everything the kernel had.

    A name kept whose parent folder is not in the image is dropped with
    the folder.  `CrashOS` does not call the real fsync (the model, not
    the disk, decides what is durable), which also keeps tests fast.

`NoSyncOS`
    The real operating system with fsync/fdatasync as no-ops, for fault
    loops that test error handling, not durability.

`snapshot` / `diff`
    (path, size, BLAKE3) of every file under a folder, to show that a
    call changed nothing, or only what it should.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import blake3

from sentinel import fs

# The errors of the fault loops (RELIABILITY.md, T7), by name.
ERRNOS: dict[str, int] = {
    "ENOSPC": errno.ENOSPC,
    "EDQUOT": errno.EDQUOT,
    "EIO": errno.EIO,
    "EROFS": errno.EROFS,
    "EACCES": errno.EACCES,
    "EMFILE": errno.EMFILE,
    "ENAMETOOLONG": errno.ENAMETOOLONG,
}
PRIMITIVES = (
    "open",
    "close",
    "write",
    "pwrite",
    "pread",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fstat_size",
    "replace",
    "unlink",
    "mkdir",
    "listdir",
    "flock",
)
WRITES = frozenset({"write", "pwrite"})
SYNCS = frozenset({"fsync", "fdatasync"})
EXIT_CODE = 137

FaultKind = Literal["errno", "short", "interrupt", "exit"]


@dataclass(frozen=True, slots=True)
class Fault:
    """What an injected call does.

    ``errno``: raise ``OSError(number)``.  ``short``: a write or pwrite
    writes about half of its bytes (at least one) and returns that count;
    other operations run normally.  ``interrupt``: raise
    `KeyboardInterrupt`.  ``exit``: ``os._exit(137)``, a whitebox crash
    (only in a child process).  `forever`: every matching call from the
    K-th on is injected, not only the K-th.
    """

    kind: FaultKind
    number: int = 0
    forever: bool = False

    @classmethod
    def error(cls, number: int, *, forever: bool = False) -> Fault:
        return cls("errno", number, forever)

    @property
    def label(self) -> str:
        if self.kind == "errno":
            name = errno.errorcode.get(self.number, str(self.number))
        else:
            name = self.kind
        return f"{name} {'forever' if self.forever else 'once'}"


def _act(fault: Fault, path: str | None) -> NoReturn:
    if fault.kind == "errno":
        raise OSError(fault.number, os.strerror(fault.number), path)
    if fault.kind == "interrupt":
        raise KeyboardInterrupt
    if fault.kind == "exit":
        os._exit(EXIT_CODE)
    raise AssertionError(f"cannot act out {fault.kind!r} here")


class FaultOS(fs.OS):
    """An `fs.OS` that injects one `Fault` at the `at`-th matching call.

    A call matches when its operation is in `ops` (all primitives when
    None) and, when `path` is given, the path it works on (for descriptor
    calls: the path the descriptor was opened with) matches that regular
    expression.  `calls` counts the matching calls, `injected` the
    injections, `trace` records ``(operation, path)`` of every call, and
    `hook`, when set, runs before every call with ``(operation, path)``
    (to pause a writer, say; an exception it raises fails the call).
    With `at` None nothing is injected: a call counter and tracer.
    """

    def __init__(
        self,
        at: int | None = None,
        fault: Fault | None = None,
        *,
        ops: Collection[str] | None = None,
        path: str | None = None,
        base: fs.OS | None = None,
        hook: Callable[[str, str | None], None] | None = None,
    ) -> None:
        unknown = set(ops or ()) - set(PRIMITIVES)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        self.at = at
        self.fault = fault
        self.ops = frozenset(ops) if ops is not None else None
        self.pattern = re.compile(path) if path is not None else None
        self.base = base if base is not None else fs.OS()
        self.hook = hook
        self.calls = 0
        self.injected = 0
        self.first: tuple[str, str | None] | None = None
        self.trace: list[tuple[str, str | None]] = []
        self.paths: dict[int, str] = {}
        self._lock = threading.Lock()

    # -- the decision --------------------------------------------------------

    def _gate(self, op: str, path: str | None) -> Fault | None:
        """Count the call; return the fault to inject on it, if any."""
        if self.hook is not None:
            self.hook(op, path)
        with self._lock:
            self.trace.append((op, path))
            if self.ops is not None and op not in self.ops:
                return None
            if self.pattern is not None and (
                path is None or not self.pattern.search(path)
            ):
                return None
            self.calls += 1
            fault, at = self.fault, self.at
            if fault is None or at is None:
                return None
            if self.calls != at and not (fault.forever and self.calls > at):
                return None
            if fault.kind == "short" and op not in WRITES:
                return None
            self.injected += 1
            if self.first is None:
                self.first = (op, path)
            return fault

    def _check(self, op: str, path: str | None) -> None:
        """Raise, interrupt or exit here if the call is injected.  Short
        writes are handled by the write primitives themselves."""
        fault = self._gate(op, path)
        if fault is not None and fault.kind != "short":
            _act(fault, path)

    def _fd(self, fd: int) -> str | None:
        """The path `fd` was opened with; for a descriptor opened before
        this double was installed, the path Linux gives for it."""
        path = self.paths.get(fd)
        if path is None:
            try:
                path = self.paths[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return None
        return path

    # -- the primitives -------------------------------------------------------

    def open(self, path: str, flags: int, mode: int) -> int:
        self._check("open", path)
        fd = self.base.open(path, flags, mode)
        self.paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        path = self._fd(fd)
        fault = self._gate("close", path)
        if fault is not None and fault.kind == "errno":
            # Linux frees the descriptor even when close reports an error.
            self.base.close(fd)
            self.paths.pop(fd, None)
        if fault is not None and fault.kind != "short":
            _act(fault, path)
        self.base.close(fd)
        self.paths.pop(fd, None)

    def _short(self, op: str, fd: int, data: bytes | memoryview) -> int | None:
        """The byte count a short write keeps, or None for a normal call
        (raises for the other fault kinds)."""
        fault = self._gate(op, self._fd(fd))
        if fault is None:
            return None
        if fault.kind == "short":
            return max(1, len(data) // 2) if len(data) > 1 else None
        _act(fault, self._fd(fd))

    def write(self, fd: int, data: bytes | memoryview) -> int:
        keep = self._short("write", fd, data)
        if keep is not None:
            data = memoryview(data)[:keep]
        return self.base.write(fd, data)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        keep = self._short("pwrite", fd, data)
        if keep is not None:
            data = memoryview(data)[:keep]
        return self.base.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._check("pread", self._fd(fd))
        return self.base.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        self._check("fsync", self._fd(fd))
        self.base.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._check("fdatasync", self._fd(fd))
        self.base.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._check("ftruncate", self._fd(fd))
        self.base.ftruncate(fd, size)

    def fstat_size(self, fd: int) -> int:
        self._check("fstat_size", self._fd(fd))
        return self.base.fstat_size(fd)

    def replace(self, source: str, target: str) -> None:
        self._check("replace", target)
        self.base.replace(source, target)

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        self.base.unlink(path)

    def mkdir(self, path: str) -> None:
        self._check("mkdir", path)
        self.base.mkdir(path)

    def listdir(self, path: str) -> list[str]:
        self._check("listdir", path)
        return self.base.listdir(path)

    def flock(self, fd: int, operation: int) -> None:
        self._check("flock", self._fd(fd))
        self.base.flock(fd, operation)


class NoSyncOS(fs.OS):
    """The real operating system without fsync/fdatasync: for the fault
    loops, which check error handling, not durability, and run thousands
    of trials.  Never for crash tests (RELIABILITY.md: FSYNC=0 is for
    fast unit tests only)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass


# -- power loss ---------------------------------------------------------------

OpKind = Literal[
    "create", "mkdir", "rename", "unlink", "write", "trunc", "sync"
]
NAME_OPS = frozenset({"create", "mkdir", "rename", "unlink"})


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded operation that changes what a power loss leaves.

    Paths are relative to the recorded folder, with ``/``; ``""`` is the
    folder itself.  `ino` names the file (an inode number of the model).
    ``write``: `data` at `offset`.  ``trunc``: new size `size`.
    ``sync``: an fsync/fdatasync of `path` (a folder when `is_dir`) that
    succeeded (`ok`) or failed.  ``rename``: `path` to `target`.
    """

    kind: OpKind
    ino: int
    path: str
    target: str = ""
    offset: int = 0
    data: bytes = b""
    size: int = 0
    ok: bool = True
    is_dir: bool = False

    def parent(self) -> str:
        """The folder whose fsync makes this name operation durable."""
        return _parent(self.target if self.kind == "rename" else self.path)

    def describe(self) -> str:
        if self.kind == "write":
            return f"write {self.path} [{self.offset}, +{len(self.data)})"
        if self.kind == "trunc":
            return f"trunc {self.path} to {self.size}"
        if self.kind == "rename":
            return f"rename {self.path} -> {self.target}"
        if self.kind == "sync":
            state = "" if self.ok else " (FAILED)"
            return f"sync {self.path or '.'}{state}"
        return f"{self.kind} {self.path}"


@dataclass(frozen=True, slots=True)
class Mark:
    """A workload event at a point of the trace: after `position`
    operations (so a crash after `position` or more operations comes
    after it)."""

    position: int
    label: str
    payload: Any = None


@dataclass(slots=True)
class Trace:
    """What `CrashOS` recorded: the folder before (every file durable),
    the operations, and the workload's marks."""

    pre: dict[str, tuple[int, bytes | None]]
    ops: list[Op]
    marks: list[Mark]


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _read_tree(root: str) -> dict[str, bytes | None]:
    """Relative path -> content (None for a folder) of everything under
    `root`, parents before children."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder + "/"
        for name in dirs:
            found[prefix + name] = None
        for name in sorted(files):
            with open(os.path.join(folder, name), "rb") as handle:
                found[prefix + name] = handle.read()
    return found


@dataclass(slots=True)
class _Handle:
    ino: int
    rel: str
    position: int = 0
    is_dir: bool = False


class UntrackedFileError(AssertionError):
    """`CrashOS` met a file it did not see created: something wrote to the
    recorded folder without going through `sentinel.fs`."""


class CrashOS(fs.OS):
    """Record, under folder `root`, every operation that changes the disk.

    Calls on paths outside `root` pass through unrecorded.  `mark` adds a
    workload event; `trace()` returns what was recorded.  `sync_fault`,
    when given, is asked ``(path, ordinal)`` at each fsync/fdatasync of a
    recorded file (ordinal counting from 1 over all of them); when it
    returns True the sync fails with EIO, and the model drops the file's
    dirty bytes for good, like Linux after a failed writeback.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        base: fs.OS | None = None,
        sync_fault: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.base = base if base is not None else fs.OS()
        self.sync_fault = sync_fault
        self.ops: list[Op] = []
        self.marks: list[Mark] = []
        self.syncs = 0
        self._lock = threading.RLock()
        self._names: dict[str, int] = {}
        self._dirs: set[int] = {0}
        self._fds: dict[int, _Handle] = {}
        self._pre: dict[str, tuple[int, bytes | None]] = {}
        self._next = 1
        for rel, content in _read_tree(self.root).items():
            ino = self._new_ino(content is None)
            self._names[rel] = ino
            self._pre[rel] = (ino, content)

    def _new_ino(self, is_dir: bool) -> int:
        ino = self._next
        self._next += 1
        if is_dir:
            self._dirs.add(ino)
        return ino

    def _rel(self, path: str) -> str | None:
        full = os.path.abspath(path)
        if full == self.root:
            return ""
        if full.startswith(self.root + os.sep):
            return full[len(self.root) + 1 :].replace(os.sep, "/")
        return None

    def _ino(self, rel: str) -> int:
        if rel == "":
            return 0
        try:
            return self._names[rel]
        except KeyError:
            raise UntrackedFileError(rel) from None

    def _record(self, op: Op) -> None:
        self.ops.append(op)

    def _handle(self, fd: int) -> _Handle | None:
        """The handle of `fd`; a descriptor opened before this double was
        installed is found through /proc (Linux)."""
        handle = self._fds.get(fd)
        if handle is not None:
            return handle
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        rel = self._rel(path)
        if rel is None or not (rel == "" or rel in self._names):
            return None
        ino = self._ino(rel)
        position = os.lseek(fd, 0, os.SEEK_CUR)
        handle = self._fds[fd] = _Handle(ino, rel, position, ino in self._dirs)
        return handle

    # -- the record ----------------------------------------------------------

    def mark(self, label: str, payload: Any = None) -> None:
        """Note a workload event after the operations recorded so far."""
        with self._lock:
            self.marks.append(Mark(len(self.ops), label, payload))

    def trace(self) -> Trace:
        with self._lock:
            return Trace(dict(self._pre), list(self.ops), list(self.marks))

    # -- the primitives -------------------------------------------------------

    def open(self, path: str, flags: int, mode: int) -> int:
        rel = self._rel(path)
        if rel is None:
            return self.base.open(path, flags, mode)
        with self._lock:
            existed = rel == "" or rel in self._names
            fd = self.base.open(path, flags, mode)
            if not existed:
                if not flags & os.O_CREAT:
                    self.base.close(fd)
                    raise UntrackedFileError(rel)
                ino = self._new_ino(False)
                self._names[rel] = ino
                self._record(Op("create", ino, rel))
            else:
                ino = self._ino(rel)
                if flags & os.O_TRUNC:
                    self._record(Op("trunc", ino, rel, size=0))
            self._fds[fd] = _Handle(ino, rel, 0, ino in self._dirs)
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self.base.close(fd)
            self._fds.pop(fd, None)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self._lock:
            handle = self._handle(fd)
            count = self.base.write(fd, data)
            if handle is not None:
                self._record(
                    Op(
                        "write",
                        handle.ino,
                        handle.rel,
                        offset=handle.position,
                        data=bytes(data[:count]),
                    )
                )
                handle.position += count
            return count

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        with self._lock:
            handle = self._handle(fd)
            count = self.base.pwrite(fd, data, offset)
            if handle is not None:
                self._record(
                    Op(
                        "write",
                        handle.ino,
                        handle.rel,
                        offset=offset,
                        data=bytes(data[:count]),
                    )
                )
            return count

    def _sync(self, fd: int) -> None:
        with self._lock:
            handle = self._handle(fd)
            if handle is None:
                return
            self.syncs += 1
            failed = self.sync_fault is not None and self.sync_fault(
                handle.rel, self.syncs
            )
            self._record(
                Op(
                    "sync",
                    handle.ino,
                    handle.rel,
                    ok=not failed,
                    is_dir=handle.is_dir,
                )
            )
            if failed:
                raise OSError(errno.EIO, os.strerror(errno.EIO), handle.rel)

    def fsync(self, fd: int) -> None:
        self._sync(fd)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        with self._lock:
            handle = self._handle(fd)
            self.base.ftruncate(fd, size)
            if handle is not None:
                self._record(Op("trunc", handle.ino, handle.rel, size=size))

    def replace(self, source: str, target: str) -> None:
        rel_source, rel_target = self._rel(source), self._rel(target)
        if rel_source is None and rel_target is None:
            self.base.replace(source, target)
            return
        if rel_source is None or rel_target is None:
            raise UntrackedFileError(f"rename across the root: {source}")
        if _parent(rel_source) != _parent(rel_target):
            raise NotImplementedError("renames across folders")
        with self._lock:
            self.base.replace(source, target)
            ino = self._names.pop(rel_source)
            self._names[rel_target] = ino
            self._record(Op("rename", ino, rel_source, target=rel_target))

    def unlink(self, path: str) -> None:
        rel = self._rel(path)
        if rel is None:
            self.base.unlink(path)
            return
        with self._lock:
            self.base.unlink(path)
            ino = self._names.pop(rel)
            self._record(Op("unlink", ino, rel))

    def mkdir(self, path: str) -> None:
        rel = self._rel(path)
        if rel is None:
            self.base.mkdir(path)
            return
        with self._lock:
            self.base.mkdir(path)
            ino = self._new_ino(True)
            self._names[rel] = ino
            self._record(Op("mkdir", ino, rel, is_dir=True))

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.base.pread(fd, size, offset)

    def fstat_size(self, fd: int) -> int:
        return self.base.fstat_size(fd)

    def listdir(self, path: str) -> list[str]:
        return self.base.listdir(path)

    def flock(self, fd: int, operation: int) -> None:
        self.base.flock(fd, operation)


# -- the disk model -----------------------------------------------------------

CONTENT_MODES = ("drop", "zero", "garbage", "torn", "pages")
ALL_MODES = (*CONTENT_MODES, "keep")
# Writeback unit of the ``pages`` mode: the page cache writes back, and a
# disk's volatile cache may persist, whole pages in any order.
PAGE = 4096
SUBSET_LIMIT = 8
Image = dict[str, bytes | None]


@dataclass(slots=True)
class _Node:
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)
    synced: bytearray = field(default_factory=bytearray)
    # Since the last sync: written ranges, and the writes in order.
    dirty: list[tuple[int, int]] = field(default_factory=list)
    writes: list[Op] = field(default_factory=list)
    # Smallest size the file was truncated to since the last sync.
    cut: int | None = None


def _put(buffer: bytearray, offset: int, data: bytes) -> None:
    end = offset + len(data)
    if end > len(buffer):
        buffer.extend(bytes(end - len(buffer)))
    buffer[offset:end] = data


def _resize(buffer: bytearray, size: int) -> None:
    if size < len(buffer):
        del buffer[size:]
    else:
        buffer.extend(bytes(size - len(buffer)))


def _apply_name(names: dict[str, int], op: Op) -> None:
    if op.kind in ("create", "mkdir"):
        names[op.path] = op.ino
    elif op.kind == "rename":
        if names.get(op.path) == op.ino:
            del names[op.path]
        names[op.target] = op.ino
    elif op.kind == "unlink":
        if names.get(op.path) == op.ino:
            del names[op.path]


class DiskModel:
    """Replays a `Trace` and builds crash images (see the module text).

    `names` is the namespace the process saw, `durable` the one on disk;
    `pending` the name operations not yet made durable, in order.
    """

    def __init__(self, pre: dict[str, tuple[int, bytes | None]]) -> None:
        self.nodes: dict[int, _Node] = {0: _Node(True)}
        self.names: dict[str, int] = {}
        self.durable: dict[str, int] = {}
        self.pending: list[Op] = []
        self.applied = 0
        for rel, (ino, content) in pre.items():
            self.nodes[ino] = _Node(
                content is None,
                bytearray(content or b""),
                bytearray(content or b""),
            )
            self.names[rel] = self.durable[rel] = ino

    def apply(self, op: Op) -> None:
        self.applied += 1
        if op.kind in NAME_OPS:
            if op.kind in ("create", "mkdir"):
                self.nodes[op.ino] = _Node(op.kind == "mkdir")
            _apply_name(self.names, op)
            self.pending.append(op)
            return
        node = self.nodes[op.ino]
        if op.kind == "write":
            _put(node.data, op.offset, op.data)
            node.dirty.append((op.offset, op.offset + len(op.data)))
            node.writes.append(op)
        elif op.kind == "trunc":
            _resize(node.data, op.size)
            node.cut = op.size if node.cut is None else min(node.cut, op.size)
            node.writes.append(op)
        elif node.is_dir:
            if op.ok:
                parent = op.path
                durable = [p for p in self.pending if p.parent() == parent]
                for pending in durable:
                    _apply_name(self.durable, pending)
                self.pending = [
                    p for p in self.pending if p.parent() != parent
                ]
        else:
            if op.ok:
                node.synced = self._synced(node)
            # A failed sync loses the dirty bytes: they stay in the cache
            # (the process reads them) but will never reach the disk.
            node.dirty.clear()
            node.writes.clear()
            node.cut = None

    @staticmethod
    def _synced(node: _Node) -> bytearray:
        size = len(node.data)
        keep = min(size, len(node.synced))
        if node.cut is not None:
            keep = min(keep, node.cut)
        new = bytearray(size)
        new[:keep] = node.synced[:keep]
        for start, end in node.dirty:
            end = min(end, size)
            if start < end:
                new[start:end] = node.data[start:end]
        return new

    # -- what is not durable -------------------------------------------------

    def unsynced(self) -> list[str]:
        """What a power loss now could lose: pending name operations and
        visible files with unsynced bytes or size."""
        found = [f"name not durable: {op.describe()}" for op in self.pending]
        for rel, ino in sorted(self.names.items()):
            node = self.nodes[ino]
            if node.is_dir:
                continue
            if node.writes or bytes(node.data) != bytes(node.synced):
                found.append(f"data not durable: {rel}")
        return found

    # -- images ---------------------------------------------------------------

    def image(
        self,
        mode: str,
        kept: Collection[int] = (),
        rng: random.Random | None = None,
        pages: Collection[tuple[int, int]] | None = None,
    ) -> Image:
        """The disk after a power loss now: `mode` for file contents
        (`ALL_MODES`), `kept` the indices of `pending` that made it.  For
        ``pages``, `pages` lists the ``(ino, page offset)`` pairs whose new
        bytes made it (None: each page by a coin of `rng`); for
        ``garbage``, `rng` makes the garbage."""
        if mode not in ALL_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        rng = rng or random.Random(0)
        chosen = None if pages is None else set(pages)
        image: Image = {}
        names = self._names_after(mode, kept)
        for rel in sorted(names, key=lambda p: (p.count("/"), p)):
            parent = _parent(rel)
            if parent and not (parent in image and image[parent] is None):
                continue
            ino = names[rel]
            node = self.nodes[ino]
            if node.is_dir:
                image[rel] = None
            else:
                image[rel] = self._content(ino, node, mode, rng, chosen)
        return image

    def _names_after(self, mode: str, kept: Collection[int]) -> dict[str, int]:
        if mode == "keep":
            return dict(self.names)
        names = dict(self.durable)
        for index, op in enumerate(self.pending):
            if index in kept:
                _apply_name(names, op)
        return names

    @staticmethod
    def _base(node: _Node) -> bytearray:
        """The file if its size reached the disk but no unsynced byte
        did: synced bytes, then zeros."""
        size = len(node.data)
        keep = min(size, len(node.synced))
        if node.cut is not None:
            keep = min(keep, node.cut)
        out = bytearray(size)
        out[:keep] = node.synced[:keep]
        return out

    def changed_pages(self) -> list[tuple[int, int]]:
        """``(ino, page offset)`` of every page of a file whose unsynced
        bytes differ from what the disk holds: the pages whose writeback
        order a power loss can split."""
        found = []
        for ino, node in sorted(self.nodes.items()):
            if node.is_dir or not node.dirty:
                continue
            base = self._base(node)
            pages = set()
            for start, end in node.dirty:
                end = min(end, len(node.data))
                page = start - start % PAGE
                while page < end:
                    low, high = max(page, start), min(page + PAGE, end)
                    if node.data[low:high] != base[low:high]:
                        pages.add(page)
                    page += PAGE
            found.extend((ino, page) for page in sorted(pages))
        return found

    def _content(
        self,
        ino: int,
        node: _Node,
        mode: str,
        rng: random.Random,
        chosen: set[tuple[int, int]] | None,
    ) -> bytes:
        if mode == "keep":
            return bytes(node.data)
        if mode == "drop" or not (node.writes or node.dirty):
            return bytes(node.synced)
        if mode == "torn":
            out = bytearray(node.synced)
            last = max(
                (i for i, op in enumerate(node.writes) if op.kind == "write"),
                default=-1,
            )
            for index, op in enumerate(node.writes[: last + 1]):
                if op.kind == "trunc":
                    _resize(out, op.size)
                elif index < last:
                    _put(out, op.offset, op.data)
                else:
                    # Half of the bytes that matter (a frame written with
                    # zero padding is torn inside the frame).
                    meaningful = len(op.data.rstrip(b"\0"))
                    _put(out, op.offset, op.data[: meaningful // 2])
            return bytes(out)
        # The size reached the disk, the new bytes did not (or, for
        # pages, only some of them).
        out = self._base(node)
        size = len(out)
        if mode == "garbage":
            keep = min(size, len(node.synced))
            if node.cut is not None:
                keep = min(keep, node.cut)
            out[keep:] = rng.randbytes(size - keep)
        elif mode == "pages":
            for start, end in node.dirty:
                end = min(end, size)
                page = start - start % PAGE
                while page < end:
                    low, high = max(page, start), min(page + PAGE, end)
                    if (
                        rng.random() < 0.5
                        if chosen is None
                        else (ino, page) in chosen
                    ):
                        out[low:high] = node.data[low:high]
                    page += PAGE
        return bytes(out)


@dataclass(frozen=True, slots=True)
class CrashState:
    """One disk image after a power loss after `point` operations."""

    point: int
    mode: str
    kept: tuple[int, ...]
    pending: int
    image: Image
    digest: bytes

    def describe(self, trace: Trace) -> str:
        last = trace.ops[self.point - 1].describe() if self.point else "-"
        return (
            f"crash after op {self.point}/{len(trace.ops)} ({last}), "
            f"mode {self.mode}, name ops kept {list(self.kept)} of "
            f"{self.pending}"
        )


def image_digest(image: Image) -> bytes:
    hasher = blake3.blake3()
    for rel in sorted(image):
        content = image[rel]
        hasher.update(rel.encode() + b"\0")
        if content is None:
            hasher.update(b"D")
        else:
            hasher.update(b"F%d\0" % len(content))
            hasher.update(content)
    return hasher.digest()


def _subsets(
    count: int, limit: int, samples: int, rng: random.Random
) -> list[tuple[int, ...]]:
    everything = tuple(range(count))
    if count <= limit:
        return [
            combo
            for size in range(count + 1)
            for combo in itertools.combinations(everything, size)
        ]
    chosen = {(), everything}
    while len(chosen) < samples + 2:
        chosen.add(tuple(i for i in everything if rng.random() < 0.5))
    return sorted(chosen, key=lambda c: (len(c), c))


def crash_states(
    trace: Trace,
    *,
    points: Collection[int] | None = None,
    modes: Collection[str] = ALL_MODES,
    subset_limit: int = SUBSET_LIMIT,
    samples: int = 64,
    draws: int = 3,
    seed: int = 0,
) -> Iterator[CrashState]:
    """Every distinct crash image of `trace`, point by point.

    For each point (every operation count from 0 to the end, or those in
    `points`): for ``drop``, ``zero``, ``garbage`` and ``torn``, every
    subset of the pending name operations (`samples` random ones past
    `subset_limit` operations, plus none and all); ``garbage`` with
    `draws` random fillings; ``keep`` once.  For ``pages``, with none
    and with all of the pending name operations, every subset of the
    changed pages (`samples` random ones past `subset_limit` pages).
    Images equal to one already given at the same point are skipped.
    """
    model = DiskModel(trace.pre)
    wanted = None if points is None else set(points)
    for point in range(len(trace.ops) + 1):
        if point:
            model.apply(trace.ops[point - 1])
        if wanted is not None and point not in wanted:
            continue
        seen: set[bytes] = set()
        rng = random.Random(f"{seed}/{point}")
        pending = len(model.pending)
        everything = tuple(range(pending))
        subsets = _subsets(pending, subset_limit, samples, rng)
        for mode in modes:
            choices: list[tuple[tuple[int, ...], Any]] = []
            if mode == "keep":
                choices = [(everything, None)]
            elif mode == "pages":
                changed = model.changed_pages()
                page_sets = _subsets(len(changed), subset_limit, samples, rng)
                choices = [
                    (kept, [changed[i] for i in pages])
                    for kept in sorted({(), everything})
                    for pages in page_sets
                ]
            elif mode == "garbage":
                choices = [
                    (kept, draw) for kept in subsets for draw in range(draws)
                ]
            else:
                choices = [(kept, None) for kept in subsets]
            for kept, extra in choices:
                if mode == "pages":
                    image = model.image(mode, kept, pages=extra)
                else:
                    chance = random.Random(f"{seed}/{point}/{kept}/{extra}")
                    image = model.image(mode, kept, chance)
                digest = image_digest(image)
                if digest in seen:
                    continue
                seen.add(digest)
                yield CrashState(point, mode, kept, pending, image, digest)


def materialize(image: Image, dest: str | os.PathLike[str]) -> None:
    """Write `image` under the existing folder `dest` (sparse zeros)."""
    root = os.fspath(dest)
    for rel in sorted(image, key=lambda p: (p.count("/"), p)):
        content = image[rel]
        path = os.path.join(root, rel)
        if content is None:
            os.makedirs(path, exist_ok=True)
            continue
        body = content.rstrip(b"\0")
        with open(path, "wb") as handle:
            handle.write(body)
            handle.truncate(len(content))


# -- tree snapshots -----------------------------------------------------------

Snapshot = dict[str, tuple[int, str]]


def snapshot(root: str | os.PathLike[str]) -> Snapshot:
    """Relative path -> (size, BLAKE3 hex) of every file under `root`;
    folders map to (-1, "")."""
    found: Snapshot = {}
    for rel, content in _read_tree(os.fspath(root)).items():
        if content is None:
            found[rel] = (-1, "")
        else:
            found[rel] = (len(content), blake3.blake3(content).hexdigest())
    return found


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """Readable differences between two snapshots (empty: the same)."""
    changes = []
    for rel in sorted(before.keys() | after.keys()):
        old, new = before.get(rel), after.get(rel)
        if old is None:
            changes.append(f"added {rel}")
        elif new is None:
            changes.append(f"removed {rel}")
        elif old != new:
            changes.append(f"changed {rel}: {old[0]} -> {new[0]} bytes")
    return changes


def temp_files(root: str | os.PathLike[str]) -> list[str]:
    """Temp files (`sentinel.fs.temp_name` pattern) under `root`."""
    found = []
    for folder, _dirs, files in os.walk(os.fspath(root)):
        for name in files:
            if name.startswith(".") and name.endswith(fs.TEMP_SUFFIX):
                found.append(os.path.join(folder, name))
    return sorted(found)


# -- findings ---------------------------------------------------------------


@dataclass
class Tally:
    """Counts of one figure, plus a few examples of each problem."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def bad(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        found = self.examples.setdefault(kind, [])
        if len(found) < 3:
            found.append(detail)

    def report(self) -> str:
        """Every problem found, with its examples."""
        return self.problems(tuple(self.examples))

    def problems(self, kinds: tuple[str, ...]) -> str:
        """The problems of `kinds` that were found, with examples."""
        return "\n".join(
            f"{kind} ({self.counts[kind]}): " + " | ".join(self.examples[kind])
            for kind in kinds
            if self.counts[kind]
        )
