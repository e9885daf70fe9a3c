"""The write pipeline: locks, group commit, replay and checkpoints.

One `Engine` serves one open `Store`.  Every mutation is a *plan*: a
function that, holding the store's exclusive lock, looks at the current
heads through a `Planner` and adds records (objects, ref moves, new
collections).  The records of one plan form one frame, so a plan is
atomic.  Plans that arrive while another thread is committing wait in a
queue; the next thread to get the lock commits all of them with one
append and one ``fdatasync`` (group commit).

Write order, for each group (numbered as in the spec's "Write protocol"):

1. Validate and encode the input (done by the caller, before any lock).
2. Take the in-process mutex, then the inter-process ``flock`` (LOCK_EX)
   on ``<store>/lock``.
3. Catch up: apply frames other processes appended; note a torn tail,
   which this write's append zeroes.
4. Run each plan against the current heads; a plan that raises fails
   alone and adds nothing.
5. Append all frames in one write, ``fdatasync`` the pack.
6. Apply the frames to the in-memory state, release the locks, return.

A failure in step 5 zeroes what was written and fails every plan of the
group;
nothing of it is visible, before or after a crash.

Readers in other processes see a frame only after taking LOCK_SH, which
waits for the writer's sync, so nobody reads a write that could still
fail.  Runtime: a write costs one append and one fdatasync (shared by the
group) plus O(log n) in-memory work; a read costs one ``fstat`` to notice
other writers, plus one ``pread``.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sentinel import (
    crypto,
    fs,
    journal,
    objects,
    refs,
    sealed,
    signing,
    table,
)
from sentinel.errors import (
    CorruptionError,
    CorruptJournalError,
    CorruptObjectError,
    MissingObjectError,
    StoreClosedError,
    StoreIOError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Write a new ref table once the journal past the last one reaches this
# or the size of the table itself, whichever is more: opening then replays
# a bounded tail, and the cost of checkpoints stays O(1) per write.
CHECKPOINT_MIN_TAIL = 8 * 1024 * 1024
# Objects closer than this in a pack are fetched by one read in a scan,
# and one read fetches at most _SPAN bytes.
_GAP = 16 * 1024
_SPAN = 1024 * 1024
# On close, checkpoint any tail of at least this, so reopening is quick.
CHECKPOINT_ON_CLOSE = 256 * 1024

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


# The ISO text of the last whole second `now_and_micros` formatted: a
# write only formats its microseconds.  Replaced whole, so threads
# never see half of an update.
_second_text: tuple[int, str] = (-1, "")


def now_and_micros() -> tuple[str, int]:
    """The current time as an ISO 8601 UTC string with microseconds
    (``2026-12-04T16:05:12.123456+00:00``, exactly what
    ``datetime.isoformat(timespec="microseconds")`` gives) and as
    microseconds since the epoch (the form ref moves record)."""
    global _second_text
    micros = time.time_ns() // 1000
    second, fraction = divmod(micros, 1_000_000)
    cached = _second_text
    if cached[0] != second:
        moment = datetime.fromtimestamp(second, UTC)
        text = moment.isoformat(timespec="seconds")[:19]
        cached = _second_text = (second, text)
    return f"{cached[1]}.{fraction:06d}+00:00", micros


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + (
        delta.microseconds
    )


class _Request:
    __slots__ = ("plan", "result", "error", "done")

    def __init__(self, plan: Callable[[Planner], Any]) -> None:
        self.plan = plan
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class _Deferred(Exception):
    """A plan touched a collection that an earlier plan of the same group
    created, dropped or restored; it runs in the next group instead."""


class Planner:
    """A plan's view of the store while it holds the exclusive lock.

    It sees the committed state plus the effects of plans queued before
    it in the same group.  What it adds becomes one frame.  Every check
    that replay makes on a frame (`refs.State._check`) is made here
    first, so a frame that reaches the disk always applies.  Beside the
    records it keeps what replay would decode from them (`steps`, and
    where each object lands in the body), so the writer applies its own
    frame without parsing it back.
    """

    def __init__(self, engine: Engine, overlay: _Overlay) -> None:
        self._engine = engine
        self._overlay = overlay
        self.records: list[bytes] = []
        self.size = 0
        self.steps: list[refs.Step] = []
        # (address, offset of the stored bytes in the body, their size)
        self.objects: list[tuple[bytes, int, int]] = []
        self.heads: dict[tuple[str, str], refs.Head] = {}
        self.payloads: dict[bytes, objects.Opened] = {}
        self.created: set[str] = set()
        self.settled: set[str] = set()
        self.time, self.micros = now_and_micros()

    @property
    def names(self) -> refs.NameCodec:
        """How names are written in this store's records (plain or
        sealed)."""
        return self._engine.state.names

    def _guard(self, name: str) -> None:
        if name in self._overlay.settled:
            raise _Deferred

    def has_collection(self, name: str) -> bool:
        """Whether collection `name` exists (is live)."""
        self._guard(name)
        return name in self.created or name in self._engine.state.collections

    def is_dropped(self, name: str) -> bool:
        """Whether `name` has refs set aside by a drop."""
        self._guard(name)
        return name in self._engine.state.dropped

    def create_collection(self, name: str) -> None:
        """Create collection `name` unless it exists."""
        if self.has_collection(name):
            return
        self.created.add(name)
        if self.is_dropped(name):
            self.settled.add(name)
        self._collection_record(refs.OP_CREATE, name)

    def drop_collection(self, name: str) -> None:
        """Drop live collection `name`; the caller checked it exists."""
        self.settled.add(name)
        self._collection_record(refs.OP_DROP, name)

    def restore_collection(self, name: str) -> None:
        """Restore dropped collection `name`; the caller checked."""
        self.settled.add(name)
        self._collection_record(refs.OP_RESTORE, name)

    def _collection_record(self, operation: int, name: str) -> None:
        self._add(
            journal.RECORD_COLLECTION,
            refs.encode_collection(operation, name, self.names),
        )
        self.steps.append((operation, name))

    def change_index(self, operation: int, collection: str, path: str) -> None:
        """Create (`refs.OP_CREATE_INDEX`) or drop the index on `path`;
        the caller checked that the change applies."""
        self._add(
            journal.RECORD_COLLECTION,
            refs.encode_index(operation, collection, path, self.names),
        )
        self.steps.append(refs.IndexOp(operation, collection, path))

    def _add(self, kind: int, content: bytes) -> int:
        """Add one record; return where its content starts in the
        frame body."""
        record = journal.record(kind, content)
        self.records.append(record)
        start = self.size + journal.RECORD_HEADER_SIZE
        self.size += len(record)
        return start

    def refs_of(self, collection: str) -> refs.CollectionRefs | None:
        """The committed refs of a live collection, or None."""
        self._guard(collection)
        return self._engine.state.collections.get(collection)

    def head(self, collection: str, doc_id: str) -> refs.Head | None:
        """The current head of `doc_id`, including planned moves."""
        self._guard(collection)
        key = (collection, doc_id)
        found = self.heads.get(key) or self._overlay.heads.get(key)
        if found is not None:
            return found
        refs_of = self._engine.state.collections.get(collection)
        head: refs.Head | None = refs_of.heads.get(doc_id) if refs_of else None
        return head

    def read(self, address: bytes) -> objects.Opened:
        """Type, payload and signature of an object, committed or
        planned.  Signatures are not checked: this serves writes."""
        planned = self.payloads.get(address) or self._overlay.payloads.get(
            address
        )
        if planned is not None:
            return planned
        return self._engine.read_object(address)

    def put_object(self, kind: int, payload: bytes) -> objects.Encoded:
        """Add an object unless an intact copy is already stored."""
        encoded = self._engine.codec.encode(kind, payload)
        address = encoded.address
        if address in self.payloads or address in self._overlay.payloads:
            return encoded
        if address in self._engine.state.objects:
            # Deduplicate only against a copy that still verifies; a
            # damaged copy is written again rather than trusted.
            try:
                self._engine.read_object(address)
                return encoded
            except CorruptionError:
                log.warning("rewriting damaged object %s", address.hex())
        self.payloads[address] = objects.Opened(
            kind, payload, encoded.signature
        )
        start = self._add(journal.RECORD_OBJECT, address + encoded.stored)
        self.objects.append((address, start + 32, len(encoded.stored)))
        return encoded

    def move(
        self,
        collection: str,
        doc_id: str,
        new: bytes,
        version: int,
        deleted: bool,
        micros: int,
        current: refs.Head | None,
    ) -> None:
        """Make `new` the head of `doc_id` in `collection`, moving it
        from `current`, which the caller read with `head`."""
        old = current[refs.HEAD_ADDRESS] if current else None
        self._add(
            journal.RECORD_REF,
            refs.encode_move(
                collection,
                doc_id,
                new,
                old,
                version,
                micros,
                deleted,
                self.names,
            ),
        )
        self.steps.append(
            refs.Move(collection, doc_id, new, old, version, micros, deleted)
        )
        self.heads[(collection, doc_id)] = (new, version, deleted, micros)


class _Overlay:
    """Effects of the plans already accepted into the current group."""

    def __init__(self) -> None:
        self.heads: dict[tuple[str, str], refs.Head] = {}
        self.payloads: dict[bytes, objects.Opened] = {}
        self.settled: set[str] = set()

    def absorb(self, planner: Planner) -> None:
        self.heads.update(planner.heads)
        self.payloads.update(planner.payloads)
        # Any collection a plan created is settled for the rest of the
        # group too: later plans must see it through the state.
        self.settled |= planner.settled | planner.created


class Engine:
    """Journal, state and locks of one open store.

    With `keys` (a store opened with a passphrase) objects, names and
    the ref table are sealed; this is the one place that chooses, by
    picking the codecs everything else uses: `codec` for objects,
    ``state.names`` for names in records, and the table key.
    """

    def __init__(
        self, root: str, *, durable: bool, keys: crypto.Keys | None = None
    ) -> None:
        self.root = root
        self.durable = durable
        self.journal = journal.Journal(os.path.join(root, "objects"))
        self.table_path = os.path.join(root, "refs", "table")
        self.lock_path = os.path.join(root, "lock")
        self.codec: objects.ObjectCodec
        if keys is None:
            self.codec = objects.PLAIN
            self._names: refs.NameCodec = refs.PLAIN_NAMES
            self._table_key: crypto.AeadKey | None = None
        else:
            self.codec = sealed.SealedCodec(keys)
            self._names = refs.SealedNames(keys.name_key)
            self._table_key = keys.sealing_key
        self.state = refs.State(self._names)
        self.table_problem: str | None = None
        self.damaged: set[tuple[int, int]] = set()
        self._dirty_end = 0
        self._closed = False
        self._reset_process_locals()
        try:
            self._load()
        except BaseException:
            # Closing the lock descriptor also drops any lock it holds,
            # so a failed open can never leave the store locked.
            self.journal.close_quietly()
            fs.close_quietly(self._lock_fd)
            raise
        _engines.add(self)

    def _reset_process_locals(self) -> None:
        self._mutex = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Request] = []
        self._lock_fd = fs.open_fd(self.lock_path, os.O_RDWR | os.O_CREAT)
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a forked child: new locks and descriptors of its own.

        The inherited descriptors share open file descriptions with the
        parent, so an flock taken or released through them would act on
        the parent's lock; they are dropped, not closed or unlocked.
        """
        if self._closed:
            return
        self.journal.forget_descriptors()
        self._reset_process_locals()

    # -- locking -----------------------------------------------------------

    @property
    def state_lock(self) -> threading.Lock:
        """Held while the in-memory state changes; take it to read a
        consistent slice of a collection's heads."""
        return self._mutex

    def _flock(self, operation: int) -> None:
        fs.flock(self._lock_fd, operation, self.lock_path)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's exclusive lock (mutex and ``flock``) for
        work outside the journal, such as replacing the key file."""
        self.check_open()
        if os.getpid() != self._pid:
            self._after_fork()
        with self._mutex:
            self._flock(fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._flock(fcntl.LOCK_UN)

    def check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    # -- loading and catching up ---------------------------------------------

    def _load(self) -> None:
        """Read the ref table, then replay the journal written since.

        The cyclic garbage collector is paused meanwhile: loading builds
        a few objects per document and none of them can form a cycle, so
        its passes would only double the time of opening a large store.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load_locked()
        finally:
            if collecting:
                gc.enable()

    def _load_locked(self) -> None:
        with self._mutex:
            self._repair()
            self._flock(fcntl.LOCK_SH)
            try:
                self._read_table()
                # One small read per pack: a damaged header anywhere is
                # refused at open, even in packs the ref table covers.
                for number in range(1, self.state.position[0] + 1):
                    self.journal.check_header(number)
                self._catch_up(whole_tail=True)
            finally:
                self._flock(fcntl.LOCK_UN)

    def _read_table(self) -> None:
        self._table_size = 0
        self._table_position = self.state.position
        if not fs.exists(self.table_path):
            return
        fd = fs.open_fd(self.table_path, os.O_RDONLY)
        try:
            size = fs.size(fd, self.table_path)
            data = fs.pread(fd, size, 0, self.table_path)
        finally:
            fs.close(fd, self.table_path)
        try:
            self.state = table.decode(data, self._names, self._table_key)
        except ValueError as exc:
            # The table is a cache of the journal; rebuild it from there.
            self.table_problem = f"{self.table_path}: {exc}"
            log.warning("ignoring damaged ref table: %s", exc)
            self.state = refs.State(self._names)
            return
        self._table_size = len(data)
        self._table_position = self.state.position
        pack, offset = self.state.position
        if not fs.exists(self.journal.path(pack)) or (
            self.journal.size(pack) < offset
        ):
            raise CorruptJournalError(
                f"the ref table covers {journal.pack_name(pack)} up to "
                f"offset {offset}, but the pack is shorter or missing",
                path=self.journal.path(pack),
                offset=offset,
            )

    def _catch_up(self, *, whole_tail: bool = False) -> None:
        """Apply every valid frame past the state's position.

        Follows seal records from pack to pack.  Bytes past the last
        valid frame are free space (zeros), a torn tail (remembered in
        `_dirty_end` for the next writer to zero), or damage: a damaged
        frame followed by valid ones is applied if only object records
        in it are hurt (reads of those objects then fail their hash
        check), and otherwise raises `CorruptJournalError`.

        The first catch-up of an open classifies the whole tail
        (`whole_tail`); later ones probe a few bytes at the position,
        since anything written after that begins with a frame's magic.
        """
        pack, at = self.state.position
        self.journal.advance(pack)
        while True:
            path = self.journal.path(pack)
            if not whole_tail and self.journal.is_free(pack, at):
                # A torn tail found earlier may begin with a lost page;
                # keep its end so the next write still zeroes all of it.
                dirty_end = max(at, self._dirty_end)
                break
            sealed_to = None
            for frame in self.journal.frames(pack, at):
                sealed_to = self.state.apply(frame, path)
                at = frame.end
                if sealed_to is not None:
                    break
            if sealed_to is None:
                tail = self.journal.tail_after(pack, at)
                if tail.damage_at is not None:
                    sealed_to = self._salvage(pack, at, tail.damage_at)
                    if sealed_to is None:
                        at = tail.damage_at
                        continue
                elif tail.later_frames:
                    raise CorruptJournalError(
                        f"{journal.pack_name(pack)} ends at offset {at} "
                        "without a seal, but a later pack holds frames: "
                        "the seal or frames before it are damaged",
                        path=path,
                        offset=at,
                    )
                else:
                    dirty_end = tail.dirty_end
                    break
            self.journal.advance(sealed_to)
            self.journal.check_header(sealed_to)
            pack, at = sealed_to, journal.PACK_HEADER_SIZE
            self.state.position = (pack, at)
        self._dirty_end = dirty_end

    def _salvage(self, pack: int, at: int, following: int) -> int | None:
        """Apply the damaged frame between `at` and `following`, or raise.

        Returns the next pack if the frame was a seal.
        """
        path = self.journal.path(pack)
        data = self.journal.read(pack, at, following - at)
        error = CorruptJournalError(
            f"{journal.pack_name(pack)} is damaged at offset {at}: a later "
            f"write's frame follows at {following}, so these bytes were "
            "acknowledged, and the damage is beyond object records (a "
            "frame header, a ref move or a collection record)",
            path=path,
            offset=at,
        )
        body = journal.damaged_body(data)
        if body is None:
            raise error
        frame = journal.Frame(
            pack, at, following, body, at + journal.FRAME_HEADER_SIZE
        )
        try:
            sealed_to = self.state.apply(frame, path, salvage=True)
        except CorruptJournalError as exc:
            raise error from exc
        self.state.position = (pack, following)
        self.damaged.add((pack, at))
        log.error("%s: damaged objects in the frame at %d", path, at)
        return sealed_to

    def _tail_bytes(self) -> int:
        """Roughly how much journal lies past the last ref table."""
        pack, at = self.state.position
        table_pack, table_at = self._table_position
        return (pack - table_pack) * journal.PACK_LIMIT + at - table_at

    def refresh(self) -> None:
        """Make writes that other processes completed visible here.

        Costs one small ``pread`` when nothing changed.
        """
        self.check_open()
        if os.getpid() != self._pid:
            self._after_fork()
        if self.journal.broken is not None:
            with self._mutex:
                self._repair()
        pack, at = self.state.position
        if self.journal.is_free(pack, at):
            return
        with self._mutex:
            self._flock(fcntl.LOCK_SH)
            try:
                self._catch_up()
            finally:
                self._flock(fcntl.LOCK_UN)

    def _repair(self) -> None:
        """Zero the frames of a failed write whose undo failed (holding
        the mutex), or raise: until they are gone they may look valid,
        and a write that raised must never become visible."""
        broken = self.journal.broken
        if broken is None:
            return
        pack, start, stop = broken
        self._flock(fcntl.LOCK_EX)
        try:
            self.journal.advance(pack)
            if not self.journal.erase(start, stop):
                raise StoreIOError(
                    errno.EIO,
                    "a failed write could not be undone yet; the store "
                    "refuses to read or write past it until it can",
                    self.journal.path(pack),
                )
            self.journal.broken = None
        finally:
            self._flock(fcntl.LOCK_UN)

    # -- reading -------------------------------------------------------------

    def read_object(
        self,
        address: bytes,
        verification: signing.VerificationOptions = sealed.SILENT,
    ) -> objects.Opened:
        """Return the type, verified payload and signature of a stored
        object; `verification` says whether to check the signature."""
        location = self.state.objects.get(address)
        if location is None:
            raise MissingObjectError(
                f"object {address.hex()} is not in the store",
                address=address.hex(),
            )
        pack, offset, length = refs.place(location)
        path = self.journal.path(pack)
        stored = self.journal.read(pack, offset, length)
        if len(stored) != length:
            raise CorruptObjectError(
                f"object {address.hex()} is cut short in {path}",
                path=path,
                address=address.hex(),
                offset=offset,
            )
        return self.codec.decode(
            stored, address, path=path, verification=verification
        )

    def read_many(
        self,
        addresses: list[bytes],
        verification: signing.VerificationOptions = sealed.SILENT,
    ) -> list[objects.Opened | Exception]:
        """`read_object` for many addresses, in their order.

        Objects are fetched in pack order, and neighbours (less than
        `_GAP` apart, up to `_SPAN` bytes a read) with a single
        ``pread``, so a scan reads the disk sequentially.  Each is
        decoded by the store's codec with `verification`, exactly as
        `read_object` decodes it (hash or tag, and the signature when
        the options check it; a warn-mode warning is issued here).  A
        failure is returned in the place of its object, for the caller
        to raise when it gets there.
        """
        found: list[objects.Opened | Exception | None] = [None] * len(
            addresses
        )
        decode = self.codec.decode
        locate = self.state.objects.get
        places = sorted(
            (refs.place(location), index)
            for index, address in enumerate(addresses)
            if (location := locate(address)) is not None
        )
        count = len(places)
        start = 0
        while start < count:
            pack, base, length = places[start][0]
            end = base + length
            limit = base + _SPAN
            stop = start + 1
            while stop < count:
                other, offset, length = places[stop][0]
                after = offset + length
                if other != pack or offset - end > _GAP or after > limit:
                    break
                if after > end:
                    end = after
                stop += 1
            path = self.journal.path(pack)
            data = self.journal.read(pack, base, end - base)
            for (_, offset, length), index in places[start:stop]:
                at = offset - base
                stored = data[at : at + length]
                address = addresses[index]
                try:
                    if len(stored) != length:
                        raise CorruptObjectError(
                            f"object {address.hex()} is cut short in {path}",
                            path=path,
                            address=address.hex(),
                            offset=offset,
                        )
                    found[index] = decode(
                        stored, address, path=path, verification=verification
                    )
                except Exception as exc:
                    # Any failure (a corrupt object, a bad signature in
                    # strict mode, a warning turned into an error) is
                    # raised by the caller at this object's turn.
                    found[index] = exc
            start = stop
        if count < len(addresses):
            for index, address in enumerate(addresses):
                if found[index] is None:
                    found[index] = MissingObjectError(
                        f"object {address.hex()} is not in the store",
                        address=address.hex(),
                    )
        # Every place is filled now.
        return cast(list[objects.Opened | Exception], found)

    # -- writing -------------------------------------------------------------

    def commit(self, plan: Callable[[Planner], T]) -> T:
        """Run `plan` under the exclusive lock and make its records
        durable; return what it returned, or raise what it raised."""
        self.check_open()
        if os.getpid() != self._pid:
            self._after_fork()
        request = _Request(plan)
        with self._pending_lock:
            self._pending.append(request)
        with self._mutex:
            if not request.done:
                with self._pending_lock:
                    group, self._pending = self._pending, []
                self._run(group, request)
        if request.error is not None:
            raise request.error
        result: T = request.result
        return result

    def _run(self, group: list[_Request], leader: _Request) -> None:
        try:
            self.check_open()
            self._repair()
            self._flock(fcntl.LOCK_EX)
            try:
                self._catch_up()
                self._plan_and_write(group)
            finally:
                self._flock(fcntl.LOCK_UN)
        except BaseException as exc:
            for request in group:
                if not request.done:
                    request.error = _for_waiter(exc, request is leader)
                    request.done = True
            if not isinstance(exc, Exception):
                raise
        self._maybe_checkpoint()

    def _plan_and_write(self, group: list[_Request]) -> None:
        while group:
            overlay = _Overlay()
            planners: list[Planner] = []
            written: list[_Request] = []
            deferred: list[_Request] = []
            for request in group:
                planner = Planner(self, overlay)
                try:
                    request.result = request.plan(planner)
                except _Deferred:
                    deferred.append(request)
                    continue
                except Exception as exc:
                    request.error = exc
                    request.done = True
                    continue
                if planner.records:
                    planners.append(planner)
                    overlay.absorb(planner)
                    written.append(request)
                else:
                    request.done = True
            if planners:
                self._write(planners)
            for request in written:
                request.done = True
            group = deferred

    def _write(self, planners: list[Planner]) -> None:
        """Write the frames of one group with one append and one sync,
        then apply them from what their planners recorded."""
        pack, at = self.state.position
        size = sum(journal.FRAME_OVERHEAD + p.size for p in planners)
        if at + size > journal.PACK_LIMIT and at > journal.PACK_HEADER_SIZE:
            seal = self.journal.roll(at, self.durable, self._dirty_end)
            self._apply(seal, pack, at)
            pack, at = self.state.position
        data = b"".join(journal.frame(p.records, at) for p in planners)
        self.journal.append(data, at, self.durable, self._dirty_end)
        self._dirty_end = 0
        path = self.journal.path(pack)
        start = at
        for planner in planners:
            body = start + journal.FRAME_HEADER_SIZE
            end = body + planner.size + journal.FRAME_TRAILER.size
            self.state.apply_written(
                [
                    (address, refs.location(pack, body + offset, length))
                    for address, offset, length in planner.objects
                ],
                planner.steps,
                (pack, end),
                path,
                start,
            )
            start = end

    def _apply(self, data: bytes, pack: int, at: int) -> None:
        """Apply frames this process just wrote (a seal), parsing them
        exactly as replay does."""
        path = self.journal.path(pack)
        for frame in journal.parse_frames(data, pack, at):
            sealed_to = self.state.apply(frame, path)
            if sealed_to is not None:
                self.journal.advance(sealed_to)
                self.state.position = (sealed_to, journal.PACK_HEADER_SIZE)
        self._dirty_end = 0

    # -- checkpoints ---------------------------------------------------------

    def _maybe_checkpoint(self, threshold: int | None = None) -> None:
        limit = threshold or max(CHECKPOINT_MIN_TAIL, self._table_size)
        if self._tail_bytes() < limit:
            return
        try:
            self.checkpoint()
        except StoreIOError as exc:
            # The journal already holds every acknowledged write; a table
            # that cannot be written only makes the next open slower.
            log.warning("could not write the ref table: %s", exc)

    def checkpoint(self) -> None:
        """Write the ref table for the current state (holding the mutex).

        Without durable writes, the pack is synced first: a table must
        never describe frames that a power loss could take away.
        """
        if not self.durable:
            self.journal.sync()
        data = table.encode(self.state, self._table_key)
        fs.write_atomic(self.table_path, data)
        self._table_size = len(data)
        self._table_position = self.state.position
        self.table_problem = None

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        with self._mutex:
            # Checked again under the mutex: two threads closing at once
            # must not both close the descriptors (the second close
            # could hit a number reused by someone else's file).
            if self._closed:
                return
            if os.getpid() == self._pid:
                self._maybe_checkpoint(CHECKPOINT_ON_CLOSE)
            self._closed = True
            self.journal.close()
            fs.close(self._lock_fd, self.lock_path)
        _engines.discard(self)


def _for_waiter(exc: BaseException, leader: bool) -> BaseException:
    """The error each queued writer sees when its group failed.

    The leader re-raises its own exception; the others get a copy, so
    threads do not share one traceback, and an interrupt of the leader
    reaches the others as a typed error rather than a KeyboardInterrupt.
    """
    if leader and isinstance(exc, Exception):
        return exc
    if not isinstance(exc, Exception):
        error = StoreIOError(errno.EINTR, "the write was interrupted", None)
        error.__cause__ = exc
        return error
    twin = copy.copy(exc)
    twin.__cause__ = exc
    return twin


def _reinit_after_fork() -> None:
    for engine in list(_engines):
        engine._after_fork()


os.register_at_fork(after_in_child=_reinit_after_fork)
