"""The core API and lifecycle contract, on a plain and an encrypted store.

Every test here takes `any_store` (or `opener`), so it runs twice: the
encrypted store must keep exactly the promises of the plain one.  Only
the bytes on disk, the addresses (keyed) and `Document.signature`
differ, and the tests that look at those say so.
"""

from __future__ import annotations

import os
import pathlib
import struct
import threading
from datetime import UTC, datetime

import blake3
import pytest
from conftest import Opener

import sentinel
from sentinel import engine, journal, objects, refs

DOC = {"name": "Alice", "age": 30, "tags": ["a", "b"], "nested": {"x": 1}}


def hex64(value: str) -> bool:
    return len(value) == 64 and int(value, 16) >= 0


def signature_ok(store: sentinel.Store, doc: sentinel.Document) -> bool:
    """A signature in an encrypted store, none in a plain one."""
    if store.encrypted:
        return len(doc.signature) == 128 and int(doc.signature, 16) >= 0
    return doc.signature == ""


# -- single documents ---------------------------------------------------------


def test_insert_and_get(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    written = users.insert("u1", DOC)
    found = users.get("u1")
    assert found is not None
    assert found.data == DOC and written.data == DOC
    assert (found.id, found.version, found.collection) == ("u1", 1, "users")
    assert found.hash == written.hash and hex64(found.hash)
    assert found.created_at == found.updated_at == written.created_at
    assert datetime.fromisoformat(found.created_at).tzinfo is not None
    assert found.parent is None and not found.deleted
    assert found.signature == written.signature
    assert signature_ok(any_store, found)
    assert users.get("nobody") is None
    assert users.count() == 1


def test_replace_makes_versions(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    first = users.insert("u1", {"v": 1})
    second = users.insert("u1", {"v": 2})
    assert second.version == 2 and second.parent == first.hash
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert users.get("u1").data == {"v": 2}
    assert users.get("u1", version=1).data == {"v": 1}
    assert users.get("u1", version=3) is None
    assert users.count() == 1


def test_update_merges(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    users.insert("u1", {"a": {"b": 1, "c": 2}, "list": [1, 2]})
    updated = users.update("u1", {"a": {"c": 3}, "list": [9], "n": None})
    assert updated.data == {"a": {"b": 1, "c": 3}, "list": [9], "n": None}
    assert users.get("u1").data == updated.data
    with pytest.raises(sentinel.NotFoundError):
        users.update("missing", {"x": 1})


def test_upsert(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    assert users.upsert("u1", {"a": 1}) is True
    assert users.upsert("u1", {"b": 2}) is False
    assert users.get("u1").data == {"a": 1, "b": 2}


def test_delete_restore_revert(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    first = users.insert("u1", {"v": 1})
    users.insert("u1", {"v": 2})
    assert users.delete("u1") is True
    assert users.delete("u1") is False
    assert users.get("u1") is None and users.count() == 0
    restored = users.restore("u1")
    assert restored.version == 4 and restored.data == {"v": 2}
    assert restored.created_at == first.created_at
    reverted = users.revert("u1", 1)
    assert reverted.version == 5 and reverted.data == {"v": 1}
    with pytest.raises(sentinel.NotFoundError):
        users.revert("u1", 3)  # the tombstone
    with pytest.raises(sentinel.ConflictError):
        users.restore("u1")


def test_history_and_parents(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    for n in range(4):
        users.insert("u1", {"n": n})
    users.delete("u1")
    found = users.history("u1")
    assert [doc.version for doc in found] == [5, 4, 3, 2, 1]
    assert found[0].deleted and not any(doc.deleted for doc in found[1:])
    for child, parent in zip(found, found[1:], strict=False):
        assert child.parent == parent.hash
    assert found[-1].parent is None
    assert users.parent(found[1]) == found[2]
    assert users.history("nobody") == []
    assert all(signature_ok(any_store, doc) for doc in found)


def test_get_at(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    before = datetime.now(UTC)
    first = users.insert("u1", {"v": 1})
    second = users.insert("u1", {"v": 2})
    assert users.get_at("u1", before) is None
    assert users.get_at("u1", first.updated_at).data == {"v": 1}
    assert users.get_at("u1", second.updated_at).data == {"v": 2}
    with pytest.raises(sentinel.InvalidInputError):
        users.get_at("u1", "2020-01-01T00:00:00")


def test_expected_hash(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    first = users.insert("u1", {"v": 1})
    users.insert("u1", {"v": 2}, expected_hash=first.hash)
    with pytest.raises(sentinel.ConflictError):
        users.insert("u1", {"v": 3}, expected_hash=first.hash)
    assert users.get("u1").data == {"v": 2}


def test_diff(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    users.insert("u1", {"a": 1, "b": {"c": 2}})
    users.insert("u1", {"a": 1, "b": {"c": 3}, "d": 4})
    change = users.diff("u1", 1, 2)
    assert change["changed"] == [{"path": "/b/c", "old": 2, "new": 3}]
    assert change["added"] == [{"path": "/d", "value": 4}]


# -- many documents -----------------------------------------------------------


def test_listing(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    for doc_id in ("c", "a", "b", "d"):
        users.insert(doc_id, {"id": doc_id})
    users.delete("d")
    assert list(users.ids()) == ["a", "b", "c"]
    assert [doc.id for doc in users.all()] == ["a", "b", "c"]
    assert [d.id for d in users.filter(lambda d: d.id != "b")] == ["a", "c"]
    assert [d and d.id for d in users.get_many(["b", "x", "a"])] == [
        "b",
        None,
        "a",
    ]
    assert users.count() == 3


def test_bulk_insert_is_atomic(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    docs = users.bulk_insert([("a", {"n": 1}), ("b", {"n": 2})])
    assert [doc.version for doc in docs] == [1, 1]
    assert all(signature_ok(any_store, doc) for doc in docs)
    with pytest.raises(sentinel.InvalidDocumentError):
        users.bulk_insert([("c", {"n": 3}), ("d", {"bad": {1, 2}})])
    assert list(users.ids()) == ["a", "b"]


def test_batches(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    logs = any_store.collection("logs")
    users.insert("u1", {"v": 1})
    with users.batch() as batch:
        batch.insert("u2", {"v": 2})
        batch.update("u1", {"w": 1})
        batch.delete("u2")
    assert users.get("u1").data == {"v": 1, "w": 1}
    assert users.get("u2") is None
    with pytest.raises(sentinel.ConflictError):
        with any_store.batch() as both:
            both.insert("logs", "l1", {"x": 1})
            both.insert("users", "u1", {"x": 1}, expected_hash="0" * 64)
    assert logs.count() == 0


def test_collections(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    users.insert("u1", {"v": 1})
    any_store.collection("logs.2026")
    assert any_store.list_collections() == ["logs.2026", "users"]
    any_store.delete_collection("users")
    assert any_store.list_collections() == ["logs.2026"]
    with pytest.raises(sentinel.NotFoundError):
        users.get("u1")
    again = any_store.restore_collection("users")
    assert again.get("u1").data == {"v": 1}


def test_log(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    first = users.insert("u1", {"v": 1})
    users.delete("u1")
    entries = list(any_store.log("users"))
    assert [entry.action for entry in entries] == ["create", "write", "delete"]
    assert entries[1].id == "u1" and entries[1].hash == first.hash
    assert entries[2].previous == first.hash


def test_equal_objects_are_stored_once(any_store: sentinel.Store) -> None:
    any_store.collection("users")
    payload = objects.version_payload(
        "users", "u1", 1, None, "t", "t", False, b"{}"
    )
    store_engine = any_store._engine
    before = len(store_engine.state.objects)

    def plan(planner: engine.Planner) -> tuple[bytes, bytes]:
        one = planner.put_object(objects.TYPE_VERSION, payload)
        two = planner.put_object(objects.TYPE_VERSION, payload)
        return one.address, two.address

    first, second = store_engine.commit(plan)
    third, _ = store_engine.commit(plan)
    assert first == second == third
    assert len(store_engine.state.objects) == before + 1
    # The address is keyed in an encrypted store: nobody can compute it
    # from a guessed document.
    plain = objects.address_of(objects.TYPE_VERSION, payload)
    assert (first == plain) is (not any_store.encrypted)


def test_verify_and_cat_object(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    doc = users.insert("u1", DOC)
    users.insert("u1", {"v": 2})
    report = any_store.verify()
    assert report.ok, report.problems
    assert report.objects == 2 and report.refs == 1
    assert report.signatures == (2 if any_store.encrypted else 0)
    shown = any_store.cat_object(doc.hash)
    assert shown["payload"]["data"] == DOC
    assert shown["encoding"] == (2 if any_store.encrypted else 1)
    assert shown["signature"] == doc.signature


# -- reopening, other threads and processes -----------------------------------


def test_reopen_replays_the_journal(
    opener: Opener, store_path: pathlib.Path
) -> None:
    with opener(store_path) as store:
        users = store.collection("users")
        written = users.insert("u1", DOC)
        store.collection("gone").insert("g", {"x": 1})
        store.delete_collection("gone")
    with opener(store_path) as store:
        found = store.collection("users").get("u1")
        assert found == written and found.signature == written.signature
        assert store.list_collections() == ["users"]
        assert store.restore_collection("gone").get("g").data == {"x": 1}


@pytest.mark.parametrize("damage", [False, True])
def test_reopen_from_the_ref_table(
    opener: Opener,
    store_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: bool,
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_ON_CLOSE", 1)
    with opener(store_path) as store:
        users = store.collection("users")
        for n in range(20):
            users.insert(f"u{n % 7}", {"n": n})
        users.delete("u3")
        store.collection("gone").insert("g", {"x": 1})
        store.delete_collection("gone")
        expected = {doc.id: doc for doc in users.all()}
    table_path = store_path / "refs" / "table"
    assert table_path.exists()
    if damage:
        data = bytearray(table_path.read_bytes())
        data[40] ^= 1
        table_path.write_bytes(bytes(data))
    with opener(store_path) as store:
        assert (store._engine.table_problem is not None) is damage
        users = store.collection("users")
        assert {doc.id: doc for doc in users.all()} == expected
        assert [doc.version for doc in users.history("u0")] == [3, 2, 1]
        assert store.restore_collection("gone").get("g").data == {"x": 1}
        assert store.verify().ok is not damage


def test_table_placing_an_object_past_every_pack_is_refused(
    store_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table whose object offset is more than an object place can
    hold (2**40) is refused at open, not wrapped into another pack's
    place: the store replays the journal and reads the right bytes."""
    monkeypatch.setattr(engine, "CHECKPOINT_ON_CLOSE", 1)
    with sentinel.Store.new(store_path) as store:
        users = store.collection("users")
        for n in range(5):
            users.insert(f"u{n}", {"n": n})
        victim = bytes.fromhex(users.get("u2").hash)
        pack, offset, length = refs.place(store._engine.state.objects[victim])
    table_path = store_path / "refs" / "table"
    data = bytearray(table_path.read_bytes()[:-32])
    record = victim + struct.pack(">I", pack)
    at = data.index(record) + len(record)
    assert struct.unpack_from(">Q", data, at) == (offset,)
    struct.pack_into(">Q", data, at, offset + 2**40)
    table_path.write_bytes(bytes(data) + blake3.blake3(data).digest())
    with sentinel.Store.new(store_path) as store:
        assert "offset" in (store._engine.table_problem or "")
        users = store.collection("users")
        assert [doc.data["n"] for doc in users.all()] == list(range(5))
        assert refs.place(store._engine.state.objects[victim]) == (
            pack,
            offset,
            length,
        )


def test_pack_roll(
    opener: Opener, store_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "PACK_LIMIT", 4096)
    with opener(store_path) as store:
        users = store.collection("users")
        for n in range(60):
            users.insert(f"u{n}", {"n": n, "pad": "x" * 100})
    assert len(os.listdir(store_path / "objects")) > 2
    with opener(store_path) as store:
        users = store.collection("users")
        assert users.count() == 60
        assert users.get("u59").data["n"] == 59
        assert store.verify().ok


def test_name_cache_overflow(
    opener: Opener, store_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refs, "_CACHE_LIMIT", 3)
    with opener(store_path) as store:
        for name in ("a", "b", "c"):
            collection = store.collection(name)
            for n in range(5):
                collection.insert(f"id-{n}", {"n": n})
    with opener(store_path) as store:
        assert store.list_collections() == ["a", "b", "c"]
        assert list(store.collection("b").ids()) == [
            f"id-{n}" for n in range(5)
        ]
        assert len(list(store.log())) == 18


def test_threads_write_and_read(any_store: sentinel.Store) -> None:
    users = any_store.collection("users")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(15):
                users.insert(f"w{worker}-{n}", {"n": n})
                assert users.get(f"w{worker}-{n}").data == {"n": n}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert users.count() == 60
    assert any_store.verify().ok


def test_another_process_writes(
    opener: Opener, store_path: pathlib.Path
) -> None:
    with opener(store_path) as store:
        users = store.collection("users")
        users.insert("parent", {"v": 1})
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with opener(store_path) as child:
                    child.collection("users").insert("child", {"v": 2})
                    child.collection("other").insert("x", {"v": 3})
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert users.get("child").data == {"v": 2}
        assert store.list_collections() == ["other", "users"]
        assert [entry.id for entry in store.log("users")] == [
            None,
            "parent",
            "child",
        ]


# -- scans, queries, indexes and recovery, on both kinds ----------------------


def test_all_reads_windows_through_the_codec(
    any_store: sentinel.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentinel import collection as collection_module

    monkeypatch.setattr(collection_module, "_ID_WINDOW", 8)
    users = any_store.collection("users")
    # Pack order differs from id order: later versions of early ids.
    users.bulk_insert([(f"u{n:03}", {"n": n}) for n in range(40)])
    for n in range(0, 40, 3):
        users.update(f"u{n:03}", {"again": True})
    users.delete("u005")
    expected = [users.get(doc_id) for doc_id in users.ids()]
    found = list(users.all())
    assert found == expected and len(found) == 39
    assert [doc.signature for doc in found] == [
        doc.signature for doc in expected
    ]
    assert all(signature_ok(any_store, doc) for doc in found)
    if any_store.encrypted:
        strict = sentinel.VerificationOptions.strict()
        assert list(users.all(verification=strict)) == expected
    else:
        with pytest.raises(sentinel.InvalidInputError):
            users.all(verification=sentinel.VerificationOptions.strict())

    # One damaged object in the middle: the scan yields what comes
    # before it, then raises at its turn, whatever the codec.
    victim = users.get("u020")
    pack, offset, length = refs.place(
        any_store._engine.state.objects[bytes.fromhex(victim.hash)]
    )
    path = any_store._engine.journal.path(pack)
    with open(path, "r+b") as handle:
        handle.seek(offset + length - 20)
        byte = handle.read(1)
        handle.seek(offset + length - 20)
        handle.write(bytes((byte[0] ^ 0x55,)))
    seen = []
    with pytest.raises(sentinel.CorruptionError) as info:
        for doc in users.all():
            seen.append(doc.id)
    assert getattr(info.value, "address", None) == victim.hash
    assert seen == [doc.id for doc in expected if doc.id < "u020"]


def test_queries_and_indexes(
    opener: Opener, store_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_ON_CLOSE", 1)
    people = [
        ("ada", {"age": 36, "city": "London", "tags": ["math"]}),
        ("bob", {"age": 25, "city": "Oslo"}),
        ("cy", {"age": 41, "city": "Oslo", "address": {"zip": "0150"}}),
        ("di", {"age": 19, "city": "Bergen"}),
    ]
    with opener(store_path) as store:
        users = store.collection("users")
        users.bulk_insert(people)
        assert users.create_index("city") is True
        assert users.create_index("city") is False
        assert users.create_index("address.zip") is True
        result = users.query({"city": "Oslo", "age": {"$gt": 30}})
        assert [doc.id for doc in result.documents] == ["cy"]
        assert all(signature_ok(store, doc) for doc in result.documents)
        assert users.aggregate("count", where={"city": "Oslo"}) == 2
        assert users.aggregate("sum", "age") == 121
        assert users.list_indexes() == ["address.zip", "city"]
        users.drop_index("address.zip")
        assert users.list_indexes() == ["city"]
        actions = [(entry.action, entry.field) for entry in store.log("users")]
        assert ("create_index", "address.zip") in actions
        assert ("drop_index", "address.zip") in actions
        strict = sentinel.VerificationOptions.strict()
        if store.encrypted:
            found = users.query({"city": "Oslo"}, verification=strict)
            assert found.total_count == 2
        else:
            with pytest.raises(sentinel.InvalidInputError):
                users.query({"city": "Oslo"}, verification=strict)
            with pytest.raises(sentinel.InvalidInputError):
                users.aggregate("count", verification=strict)
    # Closing wrote a ref table of format 2 (index definitions), sealed
    # in an encrypted store; reopening reads it, then from the journal.
    table_path = store_path / "refs" / "table"
    data = table_path.read_bytes()
    assert data[4] == 2
    assert (b"city" in data) is (not opener.encrypted)
    for damaged in (False, True):
        if damaged:
            flipped = bytes((data[30] ^ 1,))
            table_path.write_bytes(data[:30] + flipped + data[31:])
        with opener(store_path) as store:
            assert (store._engine.table_problem is not None) is damaged
            users = store.collection("users")
            assert users.list_indexes() == ["city"]
            found = users.query({"city": "Oslo"}, explain=True)
            assert sorted(doc.id for doc in found.documents) == ["bob", "cy"]
            assert store.verify().ok is not damaged


def _rewrite_as_one_group(
    store_path: pathlib.Path, first: journal.Frame, second: journal.Frame
) -> None:
    """Rewrite two consecutive single-frame writes as the two frames of
    one group commit (the second frame naming the first's offset as
    where its write began)."""
    pack = store_path / "objects" / journal.pack_name(second.pack)
    rebuilt = journal.frame([second.body], first.offset)
    assert len(rebuilt) == second.end - second.offset
    with open(pack, "r+b") as handle:
        handle.seek(second.offset)
        handle.write(rebuilt)


@pytest.mark.parametrize("same_group", [True, False])
def test_torn_group_write_recovery(
    opener: Opener, store_path: pathlib.Path, same_group: bool
) -> None:
    with opener(store_path) as store:
        users = store.collection("users")
        kept = users.insert("kept", {"v": 1})
        users.insert("lost-1", {"v": 2})
        users.insert("lost-2", {"v": 3})
        frames = list(store._engine.journal.frames(1, 16))
    first, second = frames[-2], frames[-1]
    if same_group:
        _rewrite_as_one_group(store_path, first, second)
    # A power loss kept the second frame's page but not the first's.
    pack = store_path / "objects" / journal.pack_name(1)
    with open(pack, "r+b") as handle:
        handle.seek(first.offset)
        handle.write(bytes(first.end - first.offset))
    if not same_group:
        # The second frame is a later, acknowledged write: the damage
        # before it cannot be a torn write, and open refuses it.
        with pytest.raises(sentinel.CorruptJournalError):
            opener(store_path)
        return
    with opener(store_path) as store:
        users = store.collection("users")
        assert users.get("kept") == kept
        assert users.get("lost-1") is None and users.get("lost-2") is None
        report = store.verify()
        assert report.ok, report.problems
        # The next write takes the torn write's place and zeroes what is
        # left of it, even though it begins with zero bytes: a frame of
        # the same size (the same document again) must not make the
        # torn second frame readable right after it.
        again = users.insert("lost-1", {"v": 2})
        assert again.version == 1
        end = store._engine.state.position[1]
    rest = pack.read_bytes()[end : second.end]
    assert rest == bytes(len(rest))
    with opener(store_path) as store:
        users = store.collection("users")
        assert sorted(users.ids()) == ["kept", "lost-1"]
        assert store.verify().ok


def test_lost_config_with_data_is_refused(
    opener: Opener, store_path: pathlib.Path
) -> None:
    with opener(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
    (store_path / "sentinel.json").unlink()
    before = sorted(os.listdir(store_path))
    with pytest.raises(sentinel.UnsupportedFormatError):
        opener(store_path)
    assert sorted(os.listdir(store_path)) == before


def test_verify_knows_the_key_file(
    opener: Opener, store_path: pathlib.Path
) -> None:
    with opener(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
        assert store.verify().ok
        if not store.encrypted:
            # A key file has no place in a plain store.
            (store_path / "keys").write_bytes(b"x")
            report = store.verify()
            assert [
                (p.kind, os.path.basename(p.path)) for p in report.problems
            ] == [("stray-file", "keys")]
