"""The documented usage example, verbatim, and its basic contract."""

from __future__ import annotations

from datetime import datetime


def test_documented_usage(tmp_path):
    import sentinel

    store = sentinel.Store.new(str(tmp_path / "db"), passphrase=None)
    users = store.collection("users")
    users.insert("user-123", {"name": "Alice", "age": 30})  # insert or replace
    doc = users.get("user-123")  # Document or None
    doc.id, doc.version, doc.created_at, doc.updated_at, doc.hash, doc.data  # noqa: B018, E501
    users.count()
    users.name()
    store.list_collections()

    assert doc.id == "user-123"
    assert doc.version == 1
    assert doc.data == {"name": "Alice", "age": 30}
    assert len(doc.hash) == 64 and int(doc.hash, 16) >= 0
    assert datetime.fromisoformat(doc.created_at).tzinfo is not None
    assert doc.created_at == doc.updated_at
    assert users.count() == 1
    assert users.name() == "users"
    assert store.list_collections() == ["users"]
    assert users.get("nobody") is None
    store.close()
