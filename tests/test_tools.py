"""The scripts in tools/, run as a user runs them: a fresh interpreter
on a store folder, plain and encrypted (the passphrase from
``SENTINEL_PASSPHRASE``).  Each must exit 0 and print what the library
says about the store; a bad argument must exit non-zero with a message,
never a traceback."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from conftest import PASSPHRASE, Opener

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"


def run(
    tool: str, *args: str, encrypted: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SENTINEL_PASSPHRASE", None)
    if encrypted:
        env["SENTINEL_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, str(TOOLS / tool), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.fixture
def written(
    opener: Opener, tmp_path: pathlib.Path
) -> tuple[pathlib.Path, list[str], bool]:
    """A store with one id through write, update, delete and restore,
    and an index made and dropped; returns its path, the id's hashes
    (oldest first) and whether it is encrypted."""
    path = tmp_path / "store"
    with opener(path) as store:
        users = store.collection("users")
        hashes = [
            users.insert("alice", {"name": "Alice", "age": 30}).hash,
            users.update("alice", {"age": 31}).hash,
        ]
        users.delete("alice")
        hashes.append(users.history("alice")[0].hash)
        hashes.append(users.restore("alice").hash)
        users.create_index("age")
        users.drop_index("age")
    return path, hashes, opener.encrypted


def test_history_lists_versions_newest_first(
    written: tuple[pathlib.Path, list[str], bool],
) -> None:
    path, hashes, encrypted = written
    done = run("history.py", str(path), "users", "alice", encrypted=encrypted)
    assert done.returncode == 0, done.stderr
    found = [h for h in hashes if h in done.stdout]
    assert found == hashes
    places = [done.stdout.index(h) for h in reversed(hashes)]
    assert places == sorted(places), "not newest first"
    assert "deleted" in done.stdout
    assert "Alice" in done.stdout


def test_cat_object_shows_a_verified_object(
    written: tuple[pathlib.Path, list[str], bool],
) -> None:
    path, hashes, encrypted = written
    done = run("cat_object.py", str(path), hashes[0], encrypted=encrypted)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["payload"]["data"] == {"name": "Alice", "age": 30}
    assert shown["payload"]["id"] == "alice"


def test_log_shows_every_ref_move_and_index(
    written: tuple[pathlib.Path, list[str], bool],
) -> None:
    path, hashes, encrypted = written
    done = run("log.py", str(path), "users", encrypted=encrypted)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    actions = [line.split()[1] for line in lines]
    assert actions == [
        "create",
        "write",
        "write",
        "delete",
        "write",
        "create_index",
        "drop_index",
    ]
    assert all(h in done.stdout for h in hashes)
    assert lines[-1].split()[-2:] == ["users", "age"]


def test_diff_names_the_changed_path(
    written: tuple[pathlib.Path, list[str], bool],
) -> None:
    path, _, encrypted = written
    done = run(
        "diff.py", str(path), "users", "alice", "1", "2", encrypted=encrypted
    )
    assert done.returncode == 0, done.stderr
    assert "/age" in done.stdout
    assert "30" in done.stdout and "31" in done.stdout


def test_demo_runs_the_documented_usage(tmp_path: pathlib.Path) -> None:
    done = run("demo.py", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    assert "problems: 0" in done.stdout


def test_profile_paths_times_every_step(tmp_path: pathlib.Path) -> None:
    done = run(
        "profile_paths.py",
        "--docs",
        "300",
        "--rounds",
        "1",
        "--dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = {
        line[:44].strip(): float(line[44:])
        for line in lines
        if line.startswith("  ")
    }
    assert set(steps) >= {
        "insert durable",
        "of which fdatasync",
        "get",
        "refresh (pread)",
        "decode (header, zstd, BLAKE3)",
        "scan all()",
        "sqlite3 scan + json.loads",
        "bulk_insert, durable",
        "least work of a write (no refs, no I/O)",
    }
    assert lines[-1].startswith("a single durable insert costs ")
    # Every step was measured (no timing is compared: these machines
    # drift too much for that), and the temporary stores are gone.
    assert all(value > 0 for value in steps.values())
    assert list(tmp_path.iterdir()) == []


def test_bench_lifecycle_reports_the_bound_on_bulk_inserts(
    tmp_path: pathlib.Path,
) -> None:
    done = run(
        "bench_lifecycle.py",
        "--docs",
        "200",
        "--versions",
        "20",
        "--dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    found = re.search(
        r"least work of a write .*: ([\d.]+) us a document; a single "
        r"durable insert costs (\d+) us, ([\d.]+)x that",
        done.stdout,
    )
    assert found, done.stdout
    least, single, bound = map(float, found.groups())
    assert least > 0 and single > 0
    assert bound == pytest.approx(single / least, rel=0.2)
    assert list(tmp_path.iterdir()) == []


def test_bench_crypto_reports_the_bound_on_each_ratio(
    tmp_path: pathlib.Path,
) -> None:
    done = run(
        "bench_crypto.py",
        "--docs",
        "100",
        "--rounds",
        "1",
        "--dir",
        str(tmp_path),
    )
    # Exit status 1 says a target was missed, which timing decides;
    # no test compares timings.
    assert done.returncode in (0, 1), done.stderr
    assert "\ntargets: " in done.stdout
    bounds = re.findall(
        r"^  (\w+) +plain +([\d.]+) us \+ (.+?) +([\d.]+) us: at most "
        r"([\d.]+)x",
        done.stdout,
        re.MULTILINE,
    )
    assert [(name, step) for name, _, step, _, _ in bounds] == [
        ("insert", "Ed25519 signature"),
        ("get", "AES-256-GCM-SIV open"),
        ("scan", "AES-256-GCM-SIV open"),
    ]
    for _, plain, _, extra, ratio in bounds:
        assert float(plain) > 0 and float(extra) > 0
        assert float(ratio) == pytest.approx(
            float(plain) / (float(plain) + float(extra)), abs=0.02
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "tool, args",
    [
        ("history.py", ["users", "nobody"]),
        ("cat_object.py", ["00" * 32]),
        ("cat_object.py", ["not-hex"]),
        ("diff.py", ["users", "alice", "1", "99"]),
    ],
)
def test_bad_arguments_fail_with_a_message(
    written: tuple[pathlib.Path, list[str], bool],
    tool: str,
    args: list[str],
) -> None:
    path, _, encrypted = written
    done = run(tool, str(path), *args, encrypted=encrypted)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip()


def test_wrong_passphrase_and_missing_store(tmp_path: pathlib.Path) -> None:
    missing = run("history.py", str(tmp_path / "nothing"), "users", "a")
    assert missing.returncode != 0
    assert "not a Sentinel store" in missing.stderr
    path = tmp_path / "store"
    with Opener(encrypted=True)(path) as store:
        store.collection("users").insert("a", {"v": 1})
    env = dict(os.environ, SENTINEL_PASSPHRASE="not the passphrase")
    wrong = subprocess.run(
        [sys.executable, str(TOOLS / "log.py"), str(path)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert wrong.returncode != 0
    assert "Traceback" not in wrong.stderr, wrong.stderr
    assert "passphrase" in wrong.stderr.lower()
    assert wrong.stdout == ""
