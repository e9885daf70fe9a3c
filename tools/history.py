"""Print every version of a document, newest first, tombstones too.

python tools/history.py STORE COLLECTION ID
"""

from __future__ import annotations

from _common import open_store, parser, run, show


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("store")
    args.add_argument("collection")
    args.add_argument("id")
    options = args.parse_args()
    with open_store(options.store) as store:
        versions = store.collection(options.collection).history(options.id)
        if not versions:
            raise SystemExit(f"{options.collection}/{options.id}: no such id")
        for doc in versions:
            mark = "  (deleted)" if doc.deleted else ""
            print(f"version {doc.version}  {doc.hash}{mark}")
            print(f"  created_at {doc.created_at}")
            print(f"  updated_at {doc.updated_at}")
            for line in show(doc.data).splitlines():
                print(f"  {line}")


if __name__ == "__main__":
    run(main)
