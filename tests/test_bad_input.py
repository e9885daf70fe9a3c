"""The bad-input catalogue of RELIABILITY.md (T24), parametrised.

Every case must raise the right subclass of `sentinel.SentinelError`
(invalid input is also a `ValueError`), leave the store folder exactly as
it was (path, size, mtime and BLAKE3 of every file, mtime of every
folder), and leave the store usable.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import pathlib
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import figures
import pytest
from helpers.tree import diff, snapshot

import sentinel
from sentinel import codec

MAX_DEPTH = 128
MAX_DOCUMENT = 16 * 1024 * 1024


class Text(str):
    pass


class Number(int):
    pass


class Real(float):
    pass


class Colour(enum.IntEnum):
    RED = 1


class Mapping(dict):  # type: ignore[type-arg]
    pass


def nest_dicts(depth: int, leaf: Any = 0) -> dict[str, Any]:
    """A document of exactly `depth` nested dicts (itself included)."""
    doc: Any = leaf
    for _ in range(depth):
        doc = {"a": doc}
    return doc  # type: ignore[no-any-return]


def nest_lists(depth: int) -> dict[str, Any]:
    """A dict holding `depth - 1` nested lists: `depth` containers."""
    inner: Any = 0
    for _ in range(depth - 1):
        inner = [inner]
    return {"a": inner}


def self_dict() -> dict[str, Any]:
    doc: dict[str, Any] = {"a": 1}
    doc["self"] = doc
    return doc


def self_list() -> dict[str, Any]:
    items: list[Any] = [1]
    items.append(items)
    return {"items": items}


def deep_cycle() -> dict[str, Any]:
    inner: dict[str, Any] = {"x": []}
    inner["x"].append({"back": inner})
    return {"top": [inner]}


def shared_not_cyclic() -> dict[str, Any]:
    shared = {"k": [1, 2]}
    return {"a": shared, "b": shared, "c": [shared, shared]}


# -- the cases ---------------------------------------------------------------

BAD_IDS: dict[str, object] = {
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "slash": "a/b",
    "traversal": "../x",
    "deep traversal": "a/../../b",
    "backslash": "a\\b",
    "absolute": "/etc/passwd",
    "root": "/",
    "windows absolute": "C:\\x",
    "nul inside": "a\x00b",
    "nul": "\x00",
    "newline": "\n",
    "tab": "\t",
    "carriage return": "a\rb",
    "del": "\x7f",
    "escape": "\x1b[31m",
    "space": "a b",
    "trailing space": "a ",
    "leading space": " a",
    "too long 201": "x" * 201,
    "too long 256": "x" * 256,
    "too long 10000": "x" * 10_000,
    "CON": "CON",
    "con": "con",
    "Con": "Con",
    "PRN": "PRN",
    "AUX": "aux",
    "NUL": "NUL",
    "COM1": "COM1",
    "COM0": "com0",
    "LPT9": "LPT9",
    "lpt1": "lpt1",
    "device with extension": "nul.txt",
    "trailing dot": "a.",
    "dot inside": "a.b",
    "leading dot": ".hidden",
    "lock suffix": "x.lock",
    "tmp suffix": "x.tmp",
    "lt": "a<b",
    "gt": "a>b",
    "colon": "a:b",
    "quote": 'a"b',
    "question": "a?b",
    "star": "a*b",
    "pipe": "a|b",
    "percent": "%2e%2e",
    "latin": "é",
    "nfd": "e\u0301",
    "cjk": "日本",
    "non-bmp": "\U0001f600",
    "fullwidth": "ａ",
    "nbsp": "a\u00a0b",
    "lone surrogate": "\ud800",
    "surrogate inside": "a\udfffb",
    "bytes": b"x",
    "bytearray": bytearray(b"x"),
    "int": 1,
    "zero": 0,
    "float": 1.5,
    "None": None,
    "True": True,
    "list": ["a"],
    "tuple": ("a",),
    "object": object(),
    "str subclass": Text("abc"),
    "path": pathlib.PurePosixPath("abc"),
}

BAD_COLLECTIONS: dict[str, object] = {
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "three dots": "...",
    "leading dot": ".x",
    "trailing dot": "x.",
    "slash": "a/b",
    "traversal": "../x",
    "deep traversal": "a/../../b",
    "backslash": "a\\b",
    "absolute": "/etc/passwd",
    "nul inside": "a\x00b",
    "newline": "\n",
    "tab": "\t",
    "del": "\x7f",
    "space": "a b",
    "trailing space": "a ",
    "too long 201": "c" * 201,
    "too long 300": "c." * 150,
    "CON": "CON",
    "con": "con",
    "device with extension": "nul.txt",
    "device with extensions": "NUL.tar.gz",
    "COM1": "COM1",
    "LPT9 with extension": "lpt9.log",
    "objects": "objects",
    "refs": "refs",
    "locks": "locks",
    "tmp": "tmp",
    "OBJECTS": "OBJECTS",
    "Tmp": "Tmp",
    "lock suffix": "x.lock",
    "LOCK suffix": "x.LOCK",
    "tmp suffix": "x.tmp",
    "lt": "a<b",
    "colon": "a:b",
    "pipe": "a|b",
    "question": "a?b",
    "latin": "é",
    "nfd": "e\u0301",
    "lone surrogate": "\ud800",
    "bytes": b"x",
    "int": 1,
    "None": None,
    "path": pathlib.PurePosixPath("abc"),
    "str subclass": Text("abc"),
}


@dataclass(frozen=True)
class DocCase:
    make: Callable[[], Any]
    error: type[sentinel.SentinelError] = sentinel.InvalidDocumentError
    match: str = ""


BAD_DOCUMENTS: dict[str, DocCase] = {
    # top level
    "top list": DocCase(lambda: [1, 2], match="dict"),
    "top empty list": DocCase(lambda: []),
    "top str": DocCase(lambda: "{}", match="dict"),
    "top None": DocCase(lambda: None),
    "top int": DocCase(lambda: 1),
    "top tuple": DocCase(lambda: ("a", 1)),
    "top bytes": DocCase(lambda: b"{}"),
    "top set": DocCase(lambda: {"a"}),
    "top OrderedDict": DocCase(lambda: collections.OrderedDict(a=1)),
    "top defaultdict": DocCase(lambda: collections.defaultdict(int)),
    "top dict subclass": DocCase(lambda: Mapping(a=1)),
    "top mappingproxy": DocCase(lambda: types.MappingProxyType({"a": 1})),
    # values that are not JSON
    "set": DocCase(lambda: {"v": {1, 2}}, match="$.v"),
    "frozenset": DocCase(lambda: {"v": frozenset()}),
    "bytes": DocCase(lambda: {"v": b"x"}, match="bytes"),
    "bytearray": DocCase(lambda: {"v": bytearray(b"x")}),
    "memoryview": DocCase(lambda: {"v": memoryview(b"x")}),
    "datetime": DocCase(lambda: {"v": datetime.datetime.now()}),
    "date": DocCase(lambda: {"v": datetime.date(2024, 1, 1)}),
    "Decimal": DocCase(lambda: {"v": decimal.Decimal("1.5")}),
    "Fraction": DocCase(lambda: {"v": fractions.Fraction(1, 3)}),
    "complex": DocCase(lambda: {"v": 1 + 2j}),
    "tuple": DocCase(lambda: {"v": (1, 2)}, match="list"),
    "nested tuple": DocCase(lambda: {"a": [{"b": (1,)}]}, match="$.a[0].b"),
    "object": DocCase(lambda: {"v": object()}),
    "uuid": DocCase(lambda: {"v": uuid.UUID(int=1)}),
    "function": DocCase(lambda: {"v": print}),
    "type": DocCase(lambda: {"v": int}),
    "range": DocCase(lambda: {"v": range(3)}),
    "Ellipsis": DocCase(lambda: {"v": ...}),
    "str subclass": DocCase(lambda: {"v": Text("x")}),
    "int subclass": DocCase(lambda: {"v": Number(1)}),
    "IntEnum": DocCase(lambda: {"v": Colour.RED}),
    "float subclass": DocCase(lambda: {"v": Real(1.5)}),
    "dict subclass inside": DocCase(lambda: {"v": Mapping(a=1)}),
    "generator": DocCase(lambda: {"v": (n for n in range(2))}),
    # keys
    "int and str key": DocCase(lambda: {1: "a", "1": "b"}, match="key"),
    "int key": DocCase(lambda: {1: "a"}),
    "None key": DocCase(lambda: {None: 1}),
    "float key": DocCase(lambda: {1.5: 1}),
    "bool key": DocCase(lambda: {True: 1}),
    "tuple key": DocCase(lambda: {(1, 2): 1}),
    "bytes key": DocCase(lambda: {b"k": 1}),
    "str subclass key": DocCase(lambda: {Text("k"): 1}),
    "nested int key": DocCase(lambda: {"a": {"b": {2: 1}}}, match="$.a.b"),
    # NaN and infinities, at any depth
    "NaN": DocCase(lambda: {"v": float("nan")}, match="NaN"),
    "inf": DocCase(lambda: {"v": float("inf")}),
    "-inf": DocCase(lambda: {"v": float("-inf")}),
    "NaN in list": DocCase(lambda: {"v": [1.0, float("nan")]}, match="$.v[1]"),
    "NaN deep": DocCase(
        lambda: {"a": [{"b": [[{"c": float("nan")}]]}]},
        match="$.a[0].b[0][0].c",
    ),
    "inf at depth 100": DocCase(lambda: nest_dicts(100, float("inf"))),
    # integers
    "int 2**64": DocCase(lambda: {"v": 2**64}, match="2**64"),
    "int -2**63-1": DocCase(lambda: {"v": -(2**63) - 1}, match="2**63"),
    "int 10**5000": DocCase(lambda: {"v": 10**5000}),
    "int -10**5000": DocCase(lambda: {"v": -(10**5000)}),
    "int 10**100000 nested": DocCase(lambda: {"v": [[10**100_000]]}),
    # nesting and cycles
    "dicts depth 129": DocCase(lambda: nest_dicts(129), match="128"),
    "lists depth 129": DocCase(lambda: nest_lists(129), match="128"),
    "dicts depth 1000": DocCase(lambda: nest_dicts(1000)),
    "lists depth 100000": DocCase(lambda: nest_lists(100_000)),
    "self dict": DocCase(self_dict, match="cycle"),
    "self list": DocCase(self_list, match="cycle"),
    "deep cycle": DocCase(deep_cycle, match="cycle"),
    # lone surrogates
    "surrogate value": DocCase(lambda: {"v": "\ud800"}),
    "surrogate inside value": DocCase(lambda: {"v": "a\udfffb"}),
    "surrogate key": DocCase(lambda: {"\ud800": 1}),
    "surrogate deep": DocCase(lambda: {"a": [["ok", "\udc00"]]}),
    # size
    "one byte too large": DocCase(
        lambda: {"v": "x" * (MAX_DOCUMENT - 7)},
        sentinel.DocumentTooLargeError,
        match="16,777,216",
    ),
    "too large multibyte": DocCase(
        lambda: {"v": "é" * (MAX_DOCUMENT // 2)},
        sentinel.DocumentTooLargeError,
    ),
    "too large many keys": DocCase(
        lambda: {f"key-{n:07d}-{'x' * 24}": n for n in range(500_000)},
        sentinel.DocumentTooLargeError,
    ),
    "too large escapes": DocCase(
        # 2.8 M characters, each escaped to six bytes ("\u0001")
        lambda: {"v": "\x01" * 2_800_000},
        sentinel.DocumentTooLargeError,
    ),
}


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    run: Callable[[sentinel.Store, sentinel.Collection], Any]
    error: type[BaseException]
    match: str = ""
    value_error: bool = True


def _id_cases() -> Iterator[Case]:
    for name, value in BAD_IDS.items():
        yield Case(
            "insert id",
            name,
            lambda s, c, v=value: c.insert(v, {"ok": 1}),  # type: ignore
            sentinel.InvalidIdError,
            "document id",
        )
        yield Case(
            "get id",
            name,
            lambda s, c, v=value: c.get(v),  # type: ignore[arg-type]
            sentinel.InvalidIdError,
            "document id",
        )
        yield Case(
            "history id",
            name,
            lambda s, c, v=value: c.history(v),  # type: ignore[arg-type]
            sentinel.InvalidIdError,
            "document id",
        )
    yield Case(
        "insert id",
        "bad id and bad document",
        lambda s, c: c.insert("a/b", {"v": {1}}),  # type: ignore[arg-type]
        sentinel.InvalidInputError,
    )


def _collection_cases() -> Iterator[Case]:
    for name, value in BAD_COLLECTIONS.items():
        yield Case(
            "collection",
            name,
            lambda s, c, v=value: s.collection(v),  # type: ignore
            sentinel.InvalidCollectionError,
            "collection name",
        )


def _document_cases() -> Iterator[Case]:
    for name, case in BAD_DOCUMENTS.items():
        yield Case(
            "document",
            name,
            lambda s, c, m=case.make: c.insert("doc", m()),
            case.error,
            case.match,
        )
        if name in ("top list", "NaN deep", "self dict", "int 2**64"):
            # the same documents replacing an existing id
            yield Case(
                "document replace",
                name,
                lambda s, c, m=case.make: c.insert("base", m()),
                case.error,
                case.match,
            )


def _other_cases() -> Iterator[Case]:
    for name, value in {
        "not hex": "xyz",
        "empty": "",
        "short": "ab" * 31,
        "long": "ab" * 33,
        "None": None,
        "int": 12,
    }.items():
        yield Case(
            "cat_object",
            name,
            lambda s, c, v=value: s.cat_object(v),  # type: ignore
            sentinel.InvalidInputError,
        )
    yield Case(
        "cat_object",
        "unknown address",
        lambda s, c: s.cat_object("cd" * 32),
        sentinel.MissingObjectError,
        value_error=False,
    )


CASES = [
    *_id_cases(),
    *_collection_cases(),
    *_document_cases(),
    *_other_cases(),
]


@pytest.fixture
def seeded(
    store_path: pathlib.Path,
) -> Iterator[tuple[sentinel.Store, sentinel.Collection, str]]:
    store = sentinel.Store.new(store_path)
    docs = store.collection("c")
    base = docs.insert("base", {"n": 1})
    try:
        yield store, docs, base.hash
    finally:
        store.close()


def _record(typed: bool, changed: bool) -> None:
    figures.record(
        "bad inputs",
        zero=("untyped", "tree changes"),
        cases=1,
        typed=int(typed),
        untyped=int(not typed),
        **{"tree changes": int(changed)},
    )


def _check_usable(
    store: sentinel.Store, docs: sentinel.Collection, base_hash: str
) -> None:
    base = docs.get("base")
    assert base is not None
    assert (base.version, base.hash, base.data) == (1, base_hash, {"n": 1})
    after = docs.insert("after", {"ok": True})
    got = docs.get("after")
    assert got is not None and got.data == {"ok": True}
    assert got.hash == after.hash
    assert docs.count() == 2
    assert store.list_collections() == ["c"]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES]
)
def test_bad_input(
    store_path: pathlib.Path,
    seeded: tuple[sentinel.Store, sentinel.Collection, str],
    case: Case,
) -> None:
    store, docs, base_hash = seeded
    before = snapshot(store_path)
    raised: BaseException | None = None
    try:
        case.run(store, docs)
    except BaseException as exc:  # judged below
        raised = exc
    changes = diff(before, snapshot(store_path))
    typed = isinstance(raised, case.error) and isinstance(
        raised, sentinel.SentinelError
    )
    _record(typed, bool(changes))
    assert typed, f"expected {case.error.__name__}, got {raised!r}"
    if case.value_error:
        assert isinstance(raised, ValueError)
    assert case.match in str(raised)
    assert changes == []
    _check_usable(store, docs, base_hash)


# -- opening -----------------------------------------------------------------


@dataclass(frozen=True)
class OpenCase:
    make_path: Callable[[pathlib.Path], Any]
    error: type[sentinel.SentinelError]
    passphrase: object = None


def _file_path(tmp: pathlib.Path) -> pathlib.Path:
    path = tmp / "a-file"
    path.write_bytes(b"not a folder")
    return path


def _encrypted_path(tmp: pathlib.Path) -> pathlib.Path:
    """An encrypted store made with passphrase ``pw`` (test KDF cost)."""
    path = tmp / "locked"
    with sentinel.Store.new(path, "pw", kdf=sentinel.KdfParams(8, 1, 1)):
        pass
    return path


OPEN_CASES: dict[str, OpenCase] = {
    "bytes path": OpenCase(
        lambda t: bytes(t / "s"), sentinel.InvalidInputError
    ),
    "int path": OpenCase(lambda t: 3, sentinel.InvalidInputError),
    "None path": OpenCase(lambda t: None, sentinel.InvalidInputError),
    "NUL in path": OpenCase(
        lambda t: str(t / "a\x00b"), sentinel.InvalidInputError
    ),
    # A passphrase creates an encrypted store; these are the refusals.
    "empty passphrase, new": OpenCase(
        lambda t: t / "new" / "s", sentinel.InvalidPassphraseError, ""
    ),
    "non-str passphrase, new": OpenCase(
        lambda t: t / "new" / "s", sentinel.InvalidPassphraseError, 7
    ),
    "passphrase, existing": OpenCase(
        lambda t: t / "existing", sentinel.PassphraseNotExpectedError, "pw"
    ),
    "empty passphrase": OpenCase(
        lambda t: t / "existing", sentinel.PassphraseNotExpectedError, ""
    ),
    "encrypted, no passphrase": OpenCase(
        _encrypted_path, sentinel.PassphraseRequiredError
    ),
    "encrypted, wrong passphrase": OpenCase(
        _encrypted_path, sentinel.WrongPassphraseError, "not pw"
    ),
    "path is a file": OpenCase(_file_path, sentinel.SentinelError),
    "inside a file": OpenCase(
        lambda t: _file_path(t) / "s", sentinel.SentinelError
    ),
}


@pytest.mark.parametrize("name", sorted(OPEN_CASES))
def test_bad_open(tmp_path: pathlib.Path, name: str) -> None:
    case = OPEN_CASES[name]
    with sentinel.Store.new(tmp_path / "existing") as store:
        store.collection("c").insert("base", {"n": 1})
    path = case.make_path(tmp_path)
    before = snapshot(tmp_path)
    raised: BaseException | None = None
    try:
        sentinel.Store.new(path, case.passphrase).close()
    except BaseException as exc:  # judged below
        raised = exc
    changes = diff(before, snapshot(tmp_path))
    typed = isinstance(raised, case.error)
    _record(typed, bool(changes))
    assert typed, f"expected {case.error.__name__}, got {raised!r}"
    assert changes == []
    with sentinel.Store.new(tmp_path / "existing") as store:
        docs = store.collection("c")
        assert docs.get("base") is not None
        docs.insert("after", {"ok": True})
        assert docs.get("after") is not None


# -- the limits themselves are accepted --------------------------------------

GOOD_DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "dicts depth 128": lambda: nest_dicts(MAX_DEPTH),
    "lists depth 128": lambda: nest_lists(MAX_DEPTH),
    "int 2**64-1": lambda: {"v": 2**64 - 1, "w": [2**64 - 1]},
    "int -2**63": lambda: {"v": -(2**63)},
    "shared, not cyclic": shared_not_cyclic,
    "exactly the size limit": lambda: {"v": "x" * (MAX_DOCUMENT - 8)},
    "bool values": lambda: {"t": True, "f": False},
}


@pytest.mark.parametrize("name", sorted(GOOD_DOCUMENTS))
def test_limits_are_accepted(store: sentinel.Store, name: str) -> None:
    data = GOOD_DOCUMENTS[name]()
    if name == "exactly the size limit":
        assert len(codec.canonical(data)) == MAX_DOCUMENT
    docs = store.collection("c")
    docs.insert("doc", data)
    got = docs.get("doc")
    assert got is not None and got.data == data
    assert docs.history("doc")[0].data == data


GOOD_IDS = [
    "a",
    "Z",
    "0",
    "_",
    "-",
    "a" * 200,
    "CONX",
    "COM10",
    "LPT",
    "x-y_Z",
]
GOOD_COLLECTIONS = ["a.b", "a..b", "x.lock.y", "object", "objects2", "c" * 200]


def test_names_at_the_limits_are_accepted(store: sentinel.Store) -> None:
    docs = store.collection("c")
    for doc_id in GOOD_IDS:
        docs.insert(doc_id, {"id": doc_id})
    assert list(docs.ids()) == sorted(GOOD_IDS)
    for name in GOOD_COLLECTIONS:
        store.collection(name).insert("x", {"name": name})
    assert store.list_collections() == sorted(["c", *GOOD_COLLECTIONS])
    assert store.verify().ok


def test_snapshot_sees_a_write(
    store_path: pathlib.Path,
    seeded: tuple[sentinel.Store, sentinel.Collection, str],
) -> None:
    """Control: the snapshot used above does notice a real write, so an
    empty diff there means something."""
    store, docs, _ = seeded
    before = snapshot(store_path)
    docs.insert("base", {"n": 2})
    assert diff(before, snapshot(store_path)) != []
    before = snapshot(store_path)
    store.collection("new")
    assert diff(before, snapshot(store_path)) != []
