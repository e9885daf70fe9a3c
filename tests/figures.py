"""Figures the test suite reports in one summary at the end of a run.

Tests call `record` with a line name and counts; counts of the same line
add up across tests.  Names listed in `zero` must stay 0: if any is not,
the run fails even when every test passed, so a figure like "lost 0" is
a checked claim, not decoration.

    record("crash trials (SIGKILL)", zero=("lost", "torn refs"),
           trials=1, **{"acknowledged writes": 17, "lost": 0,
                        "torn refs": 0})
"""

from __future__ import annotations

import threading
from collections import defaultdict

_lock = threading.Lock()
_lines: dict[str, dict[str, int]] = defaultdict(dict)
_zero: dict[str, set[str]] = defaultdict(set)


def record(line: str, *, zero: tuple[str, ...] = (), **counts: int) -> None:
    """Add `counts` to the summary line `line`."""
    with _lock:
        values = _lines[line]
        for name, value in counts.items():
            values[name] = values.get(name, 0) + int(value)
        _zero[line].update(zero)


def summary() -> list[str]:
    """The summary lines, one per figure, in a stable order."""
    with _lock:
        out = []
        for line in sorted(_lines):
            parts = [
                f"{name} {value:,}" for name, value in _lines[line].items()
            ]
            out.append(f"{line}: " + " · ".join(parts))
        return out


def violations() -> list[str]:
    """The figures that must be zero but are not."""
    with _lock:
        return [
            f"{line}: {name} = {_lines[line].get(name, 0)}"
            for line in sorted(_lines)
            for name in sorted(_zero[line])
            if _lines[line].get(name, 0) != 0
        ]
