"""Batches: many writes, one atomic and durable commit.

A batch records operations (validating each as it is added, so bad input
raises at once and nothing is written) and commits them when its ``with``
block ends without an exception.  The commit is one plan, hence one frame
and one fdatasync: all the writes become visible together, or none do,
even across a crash.  A `NotFoundError` or `ConflictError` met while
committing rejects the whole batch.  Leaving the block by an exception
discards the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sentinel import codec, names
from sentinel.collection import (
    delete_version,
    expected_address,
    private_copy,
    restore_version,
    update_version,
    upsert_version,
    write_version,
)
from sentinel.errors import SentinelError

if TYPE_CHECKING:
    from sentinel.engine import Engine, Planner

Step = Callable[["Planner"], Any]


class StoreBatch:
    """Writes across collections, committed together.

    Obtain one with `Store.batch`; each method names its collection.
    After the ``with`` block, `results` holds what each write returned
    (a `Document`, or a bool for `upsert` and `delete`), in order.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._steps: list[Step] = []
        self._done = False
        self.results: list[Any] = []

    def _add(self, step: Step) -> None:
        if self._done:
            raise SentinelError("this batch was already committed")
        self._steps.append(step)

    def insert(
        self,
        collection: str,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        name = names.collection_name(collection)
        doc_id = names.document_id(id)
        body = codec.canonical_document(data)
        expected = expected_address(expected_hash)
        self._add(
            lambda p: write_version(p, name, doc_id, body, expected=expected)
        )

    def update(
        self,
        collection: str,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        name = names.collection_name(collection)
        doc_id = names.document_id(id)
        patch = private_copy(data)
        expected = expected_address(expected_hash)
        self._add(lambda p: update_version(p, name, doc_id, patch, expected))

    def upsert(
        self,
        collection: str,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        name = names.collection_name(collection)
        doc_id = names.document_id(id)
        patch = private_copy(data)
        expected = expected_address(expected_hash)
        self._add(lambda p: upsert_version(p, name, doc_id, patch, expected))

    def delete(
        self, collection: str, id: str, *, expected_hash: str | None = None
    ) -> None:
        name = names.collection_name(collection)
        doc_id = names.document_id(id)
        expected = expected_address(expected_hash)
        self._add(lambda p: delete_version(p, name, doc_id, expected))

    def restore(self, collection: str, id: str) -> None:
        name = names.collection_name(collection)
        doc_id = names.document_id(id)
        self._add(lambda p: restore_version(p, name, doc_id))

    def commit(self) -> list[Any]:
        """Commit now (the ``with`` block does this for you)."""
        if self._done:
            raise SentinelError("this batch was already committed")
        self._done = True
        steps = self._steps
        if steps:
            self.results = self._engine.commit(
                lambda planner: [step(planner) for step in steps]
            )
        return self.results

    def __enter__(self) -> StoreBatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self._done = True


class Batch:
    """Writes to one collection, committed together.

    Obtain one with `Collection.batch`.  The methods mirror the
    collection's writes; see `StoreBatch` for the rules.
    """

    def __init__(self, engine: Engine, collection: str) -> None:
        self._batch = StoreBatch(engine)
        self._name = collection

    @property
    def results(self) -> list[Any]:
        return self._batch.results

    def insert(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        self._batch.insert(self._name, id, data, expected_hash=expected_hash)

    def update(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        self._batch.update(self._name, id, data, expected_hash=expected_hash)

    def upsert(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> None:
        self._batch.upsert(self._name, id, data, expected_hash=expected_hash)

    def delete(self, id: str, *, expected_hash: str | None = None) -> None:
        self._batch.delete(self._name, id, expected_hash=expected_hash)

    def restore(self, id: str) -> None:
        self._batch.restore(self._name, id)

    def commit(self) -> list[Any]:
        return self._batch.commit()

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._batch.__exit__(kind, value, trace)
