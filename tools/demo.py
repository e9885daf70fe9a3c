"""Run the documented usage on a fresh store and show a history.

python tools/demo.py FOLDER
"""

from __future__ import annotations

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sentinel  # noqa: E402


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "demo-store"
    if os.path.exists(os.path.join(folder, "sentinel.json")):
        shutil.rmtree(folder)
    store = sentinel.Store.new(folder, passphrase=None)
    users = store.collection("users")
    users.insert("user-123", {"name": "Alice", "age": 30})
    doc = users.get("user-123")
    print("store folder:", os.path.abspath(folder))
    print("inserted:", doc.id, "version", doc.version, "hash", doc.hash)
    print("  created_at", doc.created_at, "updated_at", doc.updated_at)
    print("  data", doc.data)
    users.insert("user-123", {"name": "Alice", "age": 31})
    users.update("user-123", {"name": "Alice Smith"})
    users.delete("user-123")
    users.restore("user-123")
    print("count:", users.count(), "collections:", store.list_collections())
    print("\nhistory of users/user-123, newest first:")
    for version in users.history("user-123"):
        state = "(deleted)" if version.deleted else version.data
        print(
            f"  v{version.version} {version.hash[:16]}... "
            f"{version.updated_at} {state}"
        )
    changes = users.diff("user-123", 1, 3)
    print("\nchanged from v1 to v3:", changes["changed"])
    report = store.verify()
    print(
        f"\nverify: {report.objects} objects, {report.refs} refs, "
        f"problems: {len(report.problems)}"
    )
    store.close()
    print(f"\nlook inside: python tools/history.py {folder} users user-123")


if __name__ == "__main__":
    main()
