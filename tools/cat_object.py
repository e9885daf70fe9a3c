"""Print any stored object, decoded and verified, with its header.

python tools/cat_object.py STORE HASH
"""

from __future__ import annotations

from _common import open_store, parser, run, show


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("store")
    args.add_argument("hash")
    options = args.parse_args()
    with open_store(options.store) as store:
        print(show(store.cat_object(options.hash)))


if __name__ == "__main__":
    run(main)
