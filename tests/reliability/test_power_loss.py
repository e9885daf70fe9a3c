"""T3 simulated power loss and T4 protocol order (RELIABILITY.md).

T3 records each workload of `crashcheck.SCENARIOS` under `CrashOS` and
checks every distinct disk image a power loss after any operation can
leave (every subset of the name operations not yet durable, every content
mode), in two models: writes that reach the disk in order (or not at
all), and unsynced pages that reach it in any order.

T4 records single calls and checks their exact sync sequence and the
order rules of `crashcheck.order_violations`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import figures
import pytest

import sentinel
from sentinel import engine, fs, journal

from . import crashcheck
from .faultfs import SYNCS, CrashOS, FaultOS, Trace

ALL_SCENARIOS = {**crashcheck.SCENARIOS, **crashcheck.SLOW_SCENARIOS}


@pytest.mark.parametrize("model", list(crashcheck.MODELS))
@pytest.mark.parametrize("name", list(ALL_SCENARIOS))
def test_power_loss(
    name: str, model: str, tmp_path: pathlib.Path, slow: bool
) -> None:
    if name in crashcheck.SLOW_SCENARIOS and not slow:
        pytest.skip("slow tier: run with --slow")
    result = crashcheck.explore(
        ALL_SCENARIOS[name],
        str(tmp_path),
        crashcheck.MODELS[model],
        slow=slow,
        seeds=3 if slow else 1,
    )
    figures.record(
        "crash states (power loss)",
        zero=("durability losses", "violations"),
        explored=result.checked,
        **{
            "crash points": result.points,
            "durability losses": result.losses,
            "violations": result.violations,
        },
    )
    assert result.checked > 0
    assert not (result.losses or result.violations), result.summary()


@pytest.mark.parametrize("name", list(crashcheck.SCENARIOS))
def test_acknowledged_writes_are_durable(
    name: str, tmp_path: pathlib.Path
) -> None:
    """T4 on whole workloads: at every acknowledgement nothing is
    unsynced, and the order rules hold at every operation."""
    recording = crashcheck.record(crashcheck.SCENARIOS[name], str(tmp_path))
    checked, broken = crashcheck.order_violations(recording.trace)
    figures.record(
        "protocol order", zero=("broken",), checked=checked, broken=len(broken)
    )
    assert checked > 0
    assert not broken, broken


def test_group_commit_workload_really_groups(tmp_path: pathlib.Path) -> None:
    """The group-commit scenario is only worth its name if one write
    carries several frames."""
    recording = crashcheck.record(
        crashcheck.SCENARIOS["group commit"], str(tmp_path)
    )
    frames = [
        op.data.count(journal.FRAME_MAGIC)
        for op in recording.trace.ops
        if op.kind == "write" and "objects/pack-" in op.path
    ]
    assert max(frames) >= 2, frames


# -- T4: single calls ---------------------------------------------------------


def traced(
    base: pathlib.Path, action: Callable[[], Any]
) -> tuple[list[tuple[str, str | None]], Trace]:
    """Run `action` under a call tracer over `CrashOS`; return the calls
    and the recorded trace (with an "ack" mark at the end)."""
    crash = CrashOS(base)
    tracer = FaultOS(base=crash)
    previous = fs.install(tracer)
    try:
        action()
    finally:
        fs.install(previous)
    crash.mark("ack")
    return tracer.trace, crash.trace()


def syncs_of(calls: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    return [
        (op, os.path.basename(path or "")) for op, path in calls if op in SYNCS
    ]


def changes_of(trace: Trace) -> list[tuple[str, str]]:
    return [(op.kind, op.path) for op in trace.ops]


PACK1 = "store/objects/pack-00000001.pack"


def test_fsyncs_per_insert(tmp_path: pathlib.Path) -> None:
    """One insert (new id, replacement) and one collection creation: a
    pwrite into the pack and one fdatasync of it, nothing else."""
    base = tmp_path / "base"
    base.mkdir()
    with sentinel.Store.new(base / "store") as store:
        docs = store.collection("docs")
        docs.insert("a", {"n": 1})
        cases = {
            "new id": lambda: docs.insert("b", {"n": 2}),
            "replace": lambda: docs.insert("a", {"n": 3}),
            "collection": lambda: store.collection("other"),
        }
        got: dict[str, list[tuple[str, str]]] = {}
        for label, action in cases.items():
            calls, trace = traced(base, action)
            got[label] = syncs_of(calls)
            assert changes_of(trace) == [("write", PACK1), ("sync", PACK1)]
            checked, broken = crashcheck.order_violations(trace)
            assert not broken, broken
    count = len(got["new id"])
    figures.record(
        "fsyncs per insert",
        zero=("mismatches",),
        expected=1,
        got=count,
        mismatches=sum(
            syncs != [("fdatasync", "pack-00000001.pack")]
            for syncs in got.values()
        ),
    )
    for label, syncs in got.items():
        assert syncs == [("fdatasync", "pack-00000001.pack")], (label, syncs)


def test_roll_makes_new_pack_durable_before_seal(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "PACK_LIMIT", 700)
    base = tmp_path / "base"
    base.mkdir()
    with sentinel.Store.new(base / "store") as store:
        docs = store.collection("docs")
        for n in range(20):
            calls, trace = traced(
                base, lambda n=n: docs.insert(f"d{n}", {"n": n, "p": "x" * 99})
            )
            if any(op.kind == "create" for op in trace.ops):
                break
        else:
            raise AssertionError("no pack roll in 20 inserts")
    new, old = "pack-00000002.pack", "pack-00000001.pack"
    assert syncs_of(calls) == [
        ("fsync", new),
        ("fsync", "objects"),
        ("fdatasync", old),
        ("fdatasync", new),
    ]
    checked, broken = crashcheck.order_violations(trace)
    figures.record(
        "protocol order", zero=("broken",), checked=checked, broken=len(broken)
    )
    assert not broken, broken


def test_checkpoint_is_write_temp_sync_rename_sync_dir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_MIN_TAIL", 1)
    base = tmp_path / "base"
    base.mkdir()
    with sentinel.Store.new(base / "store") as store:
        docs = store.collection("docs")
        calls, trace = traced(base, lambda: docs.insert("a", {"n": 1}))
    kinds = [kind for kind, _path in changes_of(trace)]
    assert kinds[:2] == ["write", "sync"]
    assert kinds[2:] == ["create", "write", "sync", "rename", "sync"], kinds
    assert trace.ops[-2].target == "store/refs/table"
    assert trace.ops[-1].path == "store/refs" and trace.ops[-1].is_dir
    checked, broken = crashcheck.order_violations(trace)
    figures.record(
        "protocol order", zero=("broken",), checked=checked, broken=len(broken)
    )
    assert not broken, broken


def test_store_creation_order(tmp_path: pathlib.Path) -> None:
    """Every new folder is durable before anything is created in it, the
    config is published by a rename of a synced temp, and nothing is left
    unsynced when `Store.new` returns."""
    base = tmp_path / "base"
    base.mkdir()
    calls, trace = traced(
        base, lambda: sentinel.Store.new(base / "deep" / "store").close()
    )
    checked, broken = crashcheck.order_violations(trace)
    figures.record(
        "protocol order", zero=("broken",), checked=checked, broken=len(broken)
    )
    assert any(op.kind == "rename" for op in trace.ops)
    assert not broken, broken
