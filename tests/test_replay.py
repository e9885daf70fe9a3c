"""The state a writer builds equals the state replay builds.

A writer applies its own frames as it writes them; another process, or
the next open, rebuilds the state by replaying the packs (from the ref
table or from the start).  Every way must give the same state, or two
handles on one store would disagree.  A seeded random workload checks
that after every step, across reopen, with and without a ref table.
"""

from __future__ import annotations

import os
import pathlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sentinel
from sentinel import refs


def snapshot(state: refs.State) -> dict[str, Any]:
    """Everything in a `State`, as plain comparable data."""

    def of(group: dict[str, refs.CollectionRefs]) -> dict[str, Any]:
        return {
            name: {
                "live": value.live,
                "heads": dict(value.heads),
                "past": {
                    key: (
                        bytes(past.addresses),
                        list(past.times),
                        bytes(past.flags),
                    )
                    for key, past in value.past.items()
                    if len(past)
                },
                "indexes": sorted(getattr(value, "indexes", ())),
            }
            for name, value in group.items()
        }

    return {
        "collections": of(state.collections),
        "dropped": of(state.dropped),
        "objects": dict(state.objects),
        "position": state.position,
    }


def step(store: sentinel.Store, rng: random.Random) -> None:
    """One random write through the public API."""
    names = store.list_collections()
    if not names or rng.random() < 0.05:
        store.collection(rng.choice(["a", "b", "c"]))
        return
    name = rng.choice(names)
    col = store.collection(name)
    doc_id = f"d{rng.randrange(12)}"
    roll = rng.random()
    try:
        if roll < 0.35:
            col.insert(doc_id, {"n": rng.randrange(100), "s": "x" * 40})
        elif roll < 0.5:
            col.update(doc_id, {"m": {"k": rng.randrange(5)}})
        elif roll < 0.6:
            col.delete(doc_id)
        elif roll < 0.68:
            col.restore(doc_id)
        elif roll < 0.76:
            col.bulk_insert(
                [(f"d{rng.randrange(12)}", {"b": i}) for i in range(3)]
            )
        elif roll < 0.84:
            with store.batch() as batch:
                batch.insert(name, doc_id, {"batch": 1})
                batch.upsert(name, f"d{rng.randrange(12)}", {"u": 2})
        elif roll < 0.88:
            col.revert(doc_id, 1)
        elif roll < 0.91:
            field = rng.choice(["n", "m.k"])
            if field in col.list_indexes():
                col.drop_index(field)
            else:
                col.create_index(field)
        elif roll < 0.95:
            store.delete_collection(name)
        else:
            store.restore_collection(name)
    except (sentinel.NotFoundError, sentinel.ConflictError):
        pass


@pytest.mark.parametrize(
    ("seed", "passphrase"),
    [(0, None), (1, None), (2, None), (3, None), (4, "replay words")],
)
def test_writer_state_equals_replayed_state(
    tmp_path: pathlib.Path, seed: int, passphrase: str | None
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "store"
    writer = sentinel.Store.new(path, passphrase=passphrase)
    reader = sentinel.Store.new(path, passphrase=passphrase)
    try:
        for number in range(300):
            step(writer, rng)
            if number % 10 == 0:
                # Another handle catches up by replaying the new frames.
                reader.list_collections()
                assert snapshot(reader._engine.state) == snapshot(
                    writer._engine.state
                )
            if number % 40 == 39:
                with writer._engine.state_lock:
                    writer._engine.checkpoint()
        expected = snapshot(writer._engine.state)
        assert len(expected["objects"]) > 100, "the workload must write"
    finally:
        writer.close()
        reader.close()

    # From the ref table, and from the packs alone.
    for drop_table in (False, True):
        if drop_table and (path / "refs" / "table").exists():
            os.unlink(path / "refs" / "table")
        with sentinel.Store.new(path, passphrase=passphrase) as again:
            assert snapshot(again._engine.state) == expected
            assert again.verify().ok


def test_group_commits_apply_as_replay_does(tmp_path: pathlib.Path) -> None:
    """Threads sharing a handle commit in groups of several frames; the
    writer places every frame of a group itself, and must place them
    where replay finds them."""
    import threading

    path = tmp_path / "store"
    writer = sentinel.Store.new(path)
    col = writer.collection("c")
    grouped = []
    original = writer._engine._write

    def spy(planners: list[Any]) -> None:
        grouped.append(len(planners))
        original(planners)

    writer._engine._write = spy  # type: ignore[method-assign]

    def work(worker: int) -> None:
        for number in range(60):
            col.insert(f"w{worker}-{number % 7}", {"n": number, "w": worker})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert max(grouped) > 1, "no group held more than one frame"
        expected = snapshot(writer._engine.state)
        for doc_id in col.ids():  # every object where the writer put it
            assert col.get(doc_id) is not None
    finally:
        writer.close()
    if (path / "refs" / "table").exists():
        os.unlink(path / "refs" / "table")
    with sentinel.Store.new(path) as again:
        assert snapshot(again._engine.state) == expected
        assert again.verify().ok


places = st.tuples(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**40 - 1),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(places, min_size=1, max_size=20))
def test_object_places_pack_and_unpack_in_order(
    found: list[tuple[int, int, int]],
) -> None:
    """A place survives packing into one int, each way the state and
    the ref table do it, and packed places sort in (pack, offset,
    length) order, as scans and the table rely on."""
    packed = [refs.location(*place) for place in found]
    assert [refs.place(location) for location in packed] == found
    rows = [(bytes([n]) * 32, *place) for n, place in enumerate(found)]
    table = refs.locations(rows)
    assert refs.object_rows(table) == sorted(rows)
    assert sorted(packed) == [refs.location(*p) for p in sorted(found)]


@pytest.mark.parametrize(
    "place", [(1, 2**40, 0), (1, -1, 0), (1, 0, 2**32), (1, 0, -1)]
)
def test_a_place_no_location_holds_is_refused(
    place: tuple[int, int, int],
) -> None:
    with pytest.raises(ValueError):
        refs.location(*place)
    with pytest.raises(ValueError):
        refs.locations([(bytes(32), *place)])
