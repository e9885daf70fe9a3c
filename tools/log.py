"""Print the ref log of a store or one collection, oldest first.

    python tools/log.py STORE [COLLECTION]

Each line: time, action, collection/id, version and the new hash;
creations, drops and restores of collections, and indexes made or
dropped (with the indexed field), appear as their own lines.
"""

from __future__ import annotations

from _common import open_store, parser, run


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("store")
    args.add_argument("collection", nargs="?")
    options = args.parse_args()
    with open_store(options.store) as store:
        for entry in store.log(options.collection):
            if entry.id is None:
                field = "" if entry.field is None else f" {entry.field}"
                print(f"{'-':32}  {entry.action:7} {entry.collection}{field}")
                continue
            print(
                f"{entry.time}  {entry.action:7} "
                f"{entry.collection}/{entry.id} v{entry.version} "
                f"{entry.hash}"
            )


if __name__ == "__main__":
    run(main)
