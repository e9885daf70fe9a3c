"""The document the lifecycle, encryption and profiling tools write."""

from __future__ import annotations

import random


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
