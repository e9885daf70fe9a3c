"""Print how one version of a document became another.

python tools/diff.py STORE COLLECTION ID FROM_VERSION TO_VERSION
"""

from __future__ import annotations

from _common import open_store, parser, run, show


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("store")
    args.add_argument("collection")
    args.add_argument("id")
    args.add_argument("a", type=int)
    args.add_argument("b", type=int)
    options = args.parse_args()
    with open_store(options.store) as store:
        collection = store.collection(options.collection)
        print(show(collection.diff(options.id, options.a, options.b)))


if __name__ == "__main__":
    run(main)
