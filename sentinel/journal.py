"""Pack files: the append-only journal that holds objects and ref moves.

Normative description: ``objects_spec/README.md`` ("Packs", "Frames",
"Records", "Recovery").  In short::

    objects/pack-00000001.pack
        pack header   16 bytes: b"SNTP", format 1, 3 zero bytes,
                      pack number (u32), CRC-32 of the 12 bytes before
        frame         b"SNTF", body length L (u32), offset where the
                      frame's write began (u32), CRC-32 of those 12
                      bytes (u32), body (L bytes), CRC-32 of the body
        frame ...

A frame is the unit of atomicity: it holds the records of one write (one
document, or a whole batch) and is either entirely valid or ignored.  A
record is ``kind (u8), length N (u32), CRC-32 of the content (u32),
content (N bytes)``; its own CRC lets `verify` name a damaged record
inside a damaged frame.  All integers are big-endian.

One write is one append of its frame and one ``fdatasync``.  Writers that
arrive together share that append and that sync (group commit, see
`sentinel.engine`).  A crash can leave a torn last write; recovery finds
it by its CRCs and the next writer zeroes it (nothing is ever truncated).
Bad bytes followed by a frame of a later write are damage to
acknowledged data, and are reported, never zeroed.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sentinel import fs
from sentinel.errors import CorruptJournalError, StoreIOError

PACK_MAGIC = b"SNTP"
PACK_FORMAT = 1
PACK_HEADER = struct.Struct(">4sB3xII")
PACK_HEADER_SIZE = PACK_HEADER.size
FRAME_MAGIC = b"SNTF"
# magic, body length, offset where the frame's group starts, CRC-32 of
# the 12 bytes before it.
FRAME_HEADER = struct.Struct(">4sIII")
_FRAME_HEAD = struct.Struct(">4sII")
FRAME_HEADER_SIZE = FRAME_HEADER.size
FRAME_TRAILER = struct.Struct(">I")
FRAME_OVERHEAD = FRAME_HEADER_SIZE + FRAME_TRAILER.size
RECORD_HEADER = struct.Struct(">BII")
RECORD_HEADER_SIZE = RECORD_HEADER.size

RECORD_OBJECT = 1
RECORD_REF = 2
RECORD_COLLECTION = 3
RECORD_SEAL = 4
RECORD_KINDS = frozenset(
    (RECORD_OBJECT, RECORD_REF, RECORD_COLLECTION, RECORD_SEAL)
)

# A pack stops taking frames past this size; a frame larger than the
# limit still goes whole into a pack of its own.
PACK_LIMIT = 64 * 1024 * 1024
MAX_FRAME = 1024 * 1024 * 1024
EXTEND_STEP = 1024 * 1024
MIN_EXTEND_STEP = 64 * 1024
READ_WINDOW = 256 * 1024
_PACK_NAME = re.compile(r"pack-(\d{8})\.pack")


def pack_name(number: int) -> str:
    return f"pack-{number:08d}.pack"


def is_pack_name(name: str) -> bool:
    return _PACK_NAME.fullmatch(name) is not None


def pack_header(number: int) -> bytes:
    head = struct.pack(">4sB3xI", PACK_MAGIC, PACK_FORMAT, number)
    return head + struct.pack(">I", zlib.crc32(head))


def record(kind: int, content: bytes) -> bytes:
    """Encode one record."""
    return RECORD_HEADER.pack(kind, len(content), zlib.crc32(content)) + (
        content
    )


def frame(records: list[bytes], group_start: int) -> bytes:
    """Encode one frame around already encoded records.

    `group_start` is the offset in the pack where the write carrying
    this frame begins (its own offset, or that of the first frame of the
    same group commit).  Recovery uses it to tell the frames of a torn
    write from the frames of later writes; see `Journal.tail_after`.
    """
    body = b"".join(records)
    head = _FRAME_HEAD.pack(FRAME_MAGIC, len(body), group_start)
    return b"".join(
        (
            head,
            struct.pack(">I", zlib.crc32(head)),
            body,
            FRAME_TRAILER.pack(zlib.crc32(body)),
        )
    )


@dataclass(frozen=True, slots=True)
class Record:
    """One record as found in a pack: where its content starts, and it.

    `intact` is False only for an object record whose CRC failed, in a
    frame read with ``salvage=True``.
    """

    kind: int
    offset: int
    content: bytes
    intact: bool = True


def records(
    body: bytes, body_offset: int, *, salvage: bool = False
) -> Iterator[Record]:
    """Yield the records of a frame body.

    `body_offset` is the body's position in its pack file, so each record
    can say where its content lives.  A malformed record raises
    `ValueError` with the reason; callers turn that into their own error.
    With `salvage`, an object record whose CRC fails is yielded with
    ``intact=False`` instead, so the rest of a damaged frame can be used.
    """
    position = 0
    end = len(body)
    while position < end:
        if end - position < RECORD_HEADER_SIZE:
            raise ValueError("record header runs past the frame")
        kind, length, crc = RECORD_HEADER.unpack_from(body, position)
        start = position + RECORD_HEADER_SIZE
        if kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {kind}")
        if start + length > end:
            raise ValueError("record runs past the frame")
        content = body[start : start + length]
        intact = zlib.crc32(content) == crc
        if not intact and not (salvage and kind == RECORD_OBJECT):
            raise ValueError("record checksum mismatch")
        yield Record(kind, body_offset + start, content, intact)
        position = start + length


def _frame_at(data: bytes, at: int) -> int | None:
    """Return the end of a valid frame starting at `at` in `data`, or
    None when the bytes there are not a whole, valid frame."""
    if len(data) - at < FRAME_OVERHEAD:
        return None
    length: int
    magic, length, _, head_crc = FRAME_HEADER.unpack_from(data, at)
    if magic != FRAME_MAGIC or zlib.crc32(data[at : at + 12]) != head_crc:
        return None
    body_start = at + FRAME_HEADER_SIZE
    body_end = body_start + length
    if length > MAX_FRAME or body_end + FRAME_TRAILER.size > len(data):
        return None
    (crc,) = FRAME_TRAILER.unpack_from(data, body_end)
    if zlib.crc32(data[body_start:body_end]) != crc:
        return None
    return body_end + FRAME_TRAILER.size


def _declared_length(data: bytes) -> int | None:
    """Total length of the frame whose intact header starts `data`."""
    if len(data) < FRAME_HEADER_SIZE:
        return None
    length: int
    magic, length, _, head_crc = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC or zlib.crc32(data[:12]) != head_crc:
        return None
    if length > MAX_FRAME:
        return None
    return length + FRAME_OVERHEAD


def damaged_body(data: bytes) -> bytes | None:
    """The body of a frame whose header is intact but whose body CRC
    fails, when `data` is exactly that frame; else None."""
    if len(data) < FRAME_OVERHEAD:
        return None
    magic, length, _, head_crc = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC or zlib.crc32(data[:12]) != head_crc:
        return None
    if length + FRAME_OVERHEAD != len(data):
        return None
    return data[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + length]


class Tail(NamedTuple):
    """What lies past the last valid frame of a pack.

    `dirty_end` is where the last non-zero byte ends (the start when
    only free space follows).  `damage_at` is the offset of a valid
    frame found after the bad bytes, which proves they were once
    acknowledged and are damaged; None when no valid frame follows.
    `later_frames` says whether a later pack holds frames, which proves
    this pack was sealed, so a pack that ends without its seal is
    damaged.  Bytes with neither proof are a torn tail: the write that
    made them never returned.
    """

    dirty_end: int
    damage_at: int | None
    later_frames: bool


def group_start(data: bytes, at: int) -> int:
    """The group-start offset in the header of the valid frame at `at`."""
    return int(FRAME_HEADER.unpack_from(data, at)[2])


@dataclass(slots=True)
class Frame:
    """A valid frame: its pack, where it starts, its body and position."""

    pack: int
    offset: int
    end: int
    body: bytes
    body_offset: int


def parse_frames(data: bytes, pack: int, offset: int) -> Iterator[Frame]:
    """Yield the valid frames at the start of `data`, which was read from
    pack `pack` at `offset`; stop at the first bytes that are not one."""
    at = 0
    while True:
        stop = _frame_at(data, at)
        if stop is None:
            return
        body_start = at + FRAME_HEADER_SIZE
        yield Frame(
            pack,
            offset + at,
            offset + stop,
            data[body_start : stop - FRAME_TRAILER.size],
            offset + body_start,
        )
        at = stop


_BROKEN: dict[str, tuple[int, int, int]] = {}


class Journal:
    """The chain of pack files in ``objects/``.

    Packs are grown ahead of need with zero bytes (`EXTEND_STEP` at a
    time), and frames overwrite those zeros.  The pack's size then does
    not change on most writes, so ``fdatasync`` only flushes data and
    skips the filesystem's metadata journal: measured here, 200 us per
    sync instead of 300 us for a size-changing append.  The end of the
    written frames is where the valid frames stop; zeros after it are
    free space, anything else is a torn tail or damage (`tail_after`).

    The object is not thread-safe; `sentinel.engine.Engine` serialises
    writers with its own locks and the store's inter-process lock.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.current = 1
        self._paths: dict[int, str] = {}
        self._read_fds: dict[int, int] = {}
        self._write_fd: int | None = None
        self._allocated = 0

    # -- paths and descriptors ---------------------------------------------

    def path(self, number: int) -> str:
        path = self._paths.get(number)
        if path is None:
            path = self._paths[number] = os.path.join(
                self.folder, pack_name(number)
            )
        return path

    def packs_on_disk(self) -> list[int]:
        """Numbers of the regular files named like packs (links and
        folders with such names are never opened)."""
        numbers = []
        for name in fs.listdir(self.folder):
            match = _PACK_NAME.fullmatch(name)
            if match and fs.kind(os.path.join(self.folder, name)) == "file":
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def read_fd(self, number: int) -> int:
        fd = self._read_fds.get(number)
        if fd is None:
            fd = fs.open_fd(self.path(number), os.O_RDONLY | os.O_NOFOLLOW)
            self._read_fds[number] = fd
        return fd

    def write_fd(self) -> int:
        if self._write_fd is None:
            path = self.path(self.current)
            self._write_fd = fs.open_fd(path, os.O_WRONLY | os.O_NOFOLLOW)
            self._allocated = fs.size(self._write_fd, path)
        return self._write_fd

    def size(self, number: int) -> int:
        return fs.size(self.read_fd(number), self.path(number))

    def read(self, number: int, offset: int, length: int) -> bytes:
        return fs.pread(
            self.read_fd(number), length, offset, self.path(number)
        )

    def close(self) -> None:
        fds = list(self._read_fds.items())
        self._read_fds.clear()
        if self._write_fd is not None:
            fds.append((self.current, self._write_fd))
            self._write_fd = None
        for number, fd in fds:
            fs.close(fd, self.path(number))

    @property
    def broken(self) -> tuple[int, int, int] | None:
        """A write that failed and could not be zeroed again: (pack,
        start, stop).  Its frames may look valid though the write raised,
        so nothing may read past `start` until they are zeroed.  Shared
        by every handle of this process on the same store, since any of
        them could otherwise apply those frames."""
        return _BROKEN.get(self.folder)

    @broken.setter
    def broken(self, value: tuple[int, int, int] | None) -> None:
        if value is None:
            _BROKEN.pop(self.folder, None)
        else:
            _BROKEN[self.folder] = value

    def close_quietly(self) -> None:
        """Close every descriptor, ignoring errors (on a failure path)."""
        fds = list(self._read_fds.values())
        if self._write_fd is not None:
            fds.append(self._write_fd)
        self.forget_descriptors()
        for fd in fds:
            fs.close_quietly(fd)

    def forget_descriptors(self) -> None:
        """Drop descriptors without closing them (after fork, the child
        must not touch the parent's open file descriptions)."""
        self._read_fds = {}
        self._write_fd = None

    # -- creation ------------------------------------------------------------

    def create_pack(self, number: int) -> None:
        """Create pack `number` durably: file, then its name.

        A pack left by a crash before its predecessor was sealed holds no
        frame (nothing is written to a pack before the seal that leads to
        it is durable), so it is removed and created again.  Anything
        else in its place (a pack with frames, a link, a folder) is
        refused, and links are never followed.
        """
        path = self.path(number)
        found = fs.kind(path)
        if found is not None:
            if found != "file" or self.holds_frames(number):
                raise CorruptJournalError(
                    f"{pack_name(number)} already exists and is not an "
                    "empty pack",
                    path=path,
                )
            stale = self._read_fds.pop(number, None)
            if stale is not None:
                fs.close(stale, path)
            fs.unlink(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = fs.open_fd(path, flags)
        try:
            fs.write_all(fd, pack_header(number), path)
            fs.fsync(fd, path)
        finally:
            fs.close(fd, path)
        fs.fsync_dir(self.folder)

    def check_header(self, number: int) -> None:
        """Raise `CorruptJournalError` unless pack `number` is a regular
        file starting with its own, intact header."""
        path = self.path(number)
        if fs.kind(path) != "file":
            raise CorruptJournalError(
                f"pack {pack_name(number)} is missing", path=path, offset=0
            )
        head = self.read(number, 0, PACK_HEADER_SIZE)
        if len(head) == PACK_HEADER_SIZE:
            magic, version, found, crc = PACK_HEADER.unpack(head)
            if (
                magic == PACK_MAGIC
                and version == PACK_FORMAT
                and head[5:8] == bytes(3)
                and found == number
                and zlib.crc32(head[:12]) == crc
            ):
                return
        raise CorruptJournalError(
            f"pack {pack_name(number)} has a bad header", path=path, offset=0
        )

    # -- reading -------------------------------------------------------------

    def frames(self, number: int, offset: int) -> Iterator[Frame]:
        """Yield the valid frames of pack `number` from `offset` on.

        Stops at the end of the file or at the first bytes that are not a
        whole valid frame; `tail_after` then says what those bytes are.
        Reads `READ_WINDOW` bytes at a time, or one whole frame when a
        frame is larger than that.
        """
        end = self.size(number)
        while offset < end:
            data = self.read(number, offset, min(READ_WINDOW, end - offset))
            last = offset
            for found in parse_frames(data, number, offset):
                yield found
                last = found.end
            if last == offset:
                whole = _declared_length(data)
                if whole is None or whole <= len(data):
                    return
                if offset + whole > end:
                    return
                data = self.read(number, offset, whole)
                big = next(parse_frames(data, number, offset), None)
                if big is None:
                    return
                yield big
                last = big.end
            offset = last

    def is_free(self, number: int, offset: int) -> bool:
        """Whether the bytes at `offset` are free space (a cheap probe:
        one small ``pread``).  Only valid once the tail past `offset`
        has been classified by `tail_after`: a write that a killed
        process left unfinished always begins with a frame's magic."""
        return self.read(number, offset, 4) in (b"\0\0\0\0", b"")

    def tail_after(self, number: int, offset: int) -> Tail:
        """Classify the bytes of pack `number` from `offset` (the end of
        its valid frames) to the end of the file; see `Tail`."""
        end = self.size(number)
        data = self.read(number, offset, end - offset)
        dirty_end = offset + len(data.rstrip(b"\0"))
        later = any(
            self.holds_frames(other)
            for other in self.packs_on_disk()
            if other > number
        )
        if dirty_end == offset:
            return Tail(offset, None, later)
        # A valid frame after the bad bytes proves damage only if it was
        # written by a later write: its group starts after `offset`.  A
        # frame whose group starts at or before `offset` belongs to the
        # same write as the bad bytes, one that a power loss tore (pages
        # of one write may reach the disk in any order) and that never
        # returned.
        first = None
        search = 1
        while True:
            found = data.find(FRAME_MAGIC, search)
            if found < 0:
                break
            stop = _frame_at(data, found)
            if stop is None:
                search = found + 1
                continue
            first = offset + found if first is None else first
            if group_start(data, found) > offset:
                return Tail(dirty_end, first, later)
            search = stop
        return Tail(dirty_end, first if later else None, later)

    def holds_frames(self, number: int) -> bool:
        """Whether pack `number` holds anything past its header.

        Frames go into a pack only after the seal that leads to it is
        durable, so a later pack that holds any bytes proves the packs
        before it were sealed.
        """
        rest = self.read(number, PACK_HEADER_SIZE, 4)
        return rest not in (b"", b"\0\0\0\0")

    # -- writing -------------------------------------------------------------

    def append(
        self, data: bytes, at: int, durable: bool, dirty_end: int
    ) -> None:
        """Write `data` at offset `at` of the current pack.

        The caller holds the store's exclusive lock and knows `at` is the
        end of the last valid frame and `dirty_end` the end of any torn
        bytes after it; those are zeroed in the same write, so no remnant
        of a torn frame can ever be read after the new frames.  When the
        pack is too small it is grown by `EXTEND_STEP` zero bytes, also in
        the same write.  On failure the written range is zeroed again so
        the failed frames can never be read, and the error propagates: a
        failed fsync is never retried into a success.
        """
        path = self.path(self.current)
        fd = self.write_fd()
        stop = at + len(data)
        padding = max(dirty_end - stop, 0)
        if stop > self._allocated:
            # Grow by a quarter of the pack, between 64 KiB and
            # EXTEND_STEP: a small store stays small on disk, a large one
            # pays for growing once per megabyte.
            step = min(max(stop // 4, MIN_EXTEND_STEP), EXTEND_STEP)
            padding = max(padding, step)
        try:
            fs.pwrite_all(fd, data + bytes(padding), at, path)
            self._allocated = max(self._allocated, stop + padding)
            if durable:
                fs.fdatasync(fd, path)
        except BaseException:
            if not self.erase(at, stop):
                self.broken = (self.current, at, stop)
            raise

    def erase(self, start: int, stop: int) -> bool:
        """Zero bytes `start` to `stop` of the current pack, durably;
        return whether that worked.

        Called while another error propagates, so its own failure is not
        raised: it would mask the first error.  The caller records the
        range in `broken` instead, and the engine retries the zeroing
        before anything in this process reads or writes past it.
        """
        path = self.path(self.current)
        try:
            fd = self.write_fd()
            # Bytes past the end of the file do not exist, so they cannot
            # make a frame look valid; zeroing them would only extend the
            # file, which fails on the full disk that often caused the
            # error being undone.
            stop = min(stop, fs.size(fd, path))
            if stop > start:
                fs.pwrite_all(fd, bytes(stop - start), start, path)
            fs.fdatasync(fd, path)
        except StoreIOError:
            self._drop_write_fd()
            return False
        return True

    def sync(self) -> None:
        """Make everything written to the current pack durable."""
        path = self.path(self.current)
        fs.fdatasync(self.write_fd(), path)

    def advance(self, number: int) -> None:
        """Make pack `number` the one that takes appends."""
        if number != self.current:
            self._drop_write_fd()
            self.current = number

    def _drop_write_fd(self) -> None:
        if self._write_fd is not None:
            try:
                fs.close(self._write_fd, self.path(self.current))
            except StoreIOError:
                pass
            self._write_fd = None

    def roll(self, at: int, durable: bool, dirty_end: int) -> bytes:
        """Seal the current pack and start the next one.

        Order: create the new pack and make its name durable, then write
        the seal frame that points to it.  A crash in between leaves an
        unreachable pack with no frames, which the next roll replaces.
        """
        following = self.current + 1
        self.create_pack(following)
        seal = frame([record(RECORD_SEAL, struct.pack(">I", following))], at)
        self.append(seal, at, durable, dirty_end)
        return seal
