"""The document the lifecycle, encryption and profiling tools write,
and the least work any write of one costs."""

from __future__ import annotations

import random
from typing import Any

# The tools that import this module put the checkout first on the path.
from sentinel import codec, objects

# A fixed timestamp: reading the clock is not part of the least work.
_MOMENT = "2026-01-01T00:00:00.000000+00:00"


def make_doc(number: int) -> dict[str, object]:
    """A document of about 300 bytes of canonical JSON, the same for
    the same `number`: a name, an email, an age, three tags, a city and
    160 characters of text."""
    rng = random.Random(number)
    return {
        "name": f"user {number}",
        "email": f"user{number}@example.com",
        "age": rng.randrange(18, 90),
        "tags": [rng.choice("abcdef") for _ in range(3)],
        "address": {"city": rng.choice(["Oslo", "Lyon", "Porto"])},
        "bio": "".join(rng.choice("abcdefgh ") for _ in range(160)),
    }


def first_version(doc_id: str, data: dict[str, Any]) -> bytes:
    """The payload of `data` as version 1 of users/`doc_id`, stamped
    with a fixed time."""
    body = codec.canonical_document(data)
    return objects.version_payload(
        "users", doc_id, 1, None, _MOMENT, _MOMENT, False, body
    )


def least_work(items: list[tuple[str, dict[str, Any]]]) -> None:
    """Do for each (id, data) of `items` what any write of a document
    must do, in a flat loop with no refs and no I/O: validate and
    encode the data, build the version payload, compress it and hash
    it.  Timing this bounds what any bulk path could reach."""
    for doc_id, data in items:
        objects.encode(objects.TYPE_VERSION, first_version(doc_id, data))
