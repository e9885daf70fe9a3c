"""Snapshots of a folder tree, to prove that a call wrote nothing."""

from __future__ import annotations

import os

import blake3

Entry = tuple[str, int, int, str]


def snapshot(root: str | os.PathLike[str]) -> dict[str, Entry]:
    """Map each path under `root` (relative) to (kind, size, mtime_ns,
    BLAKE3 of the content).

    Folders are listed too, with their mtime, so a file that was created
    and removed again still shows up as a change of its folder.
    """
    base = os.fspath(root)
    found: dict[str, Entry] = {}
    if not os.path.lexists(base):
        return found
    top = os.lstat(base)
    found["."] = ("dir", 0, top.st_mtime_ns, "")
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in dirs:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            found[os.path.relpath(path, base)] = (
                "dir",
                0,
                info.st_mtime_ns,
                "",
            )
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            with open(path, "rb") as handle:
                digest = blake3.blake3(handle.read()).hexdigest()
            found[os.path.relpath(path, base)] = (
                "file",
                info.st_size,
                info.st_mtime_ns,
                digest,
            )
    return found


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """Human-readable differences between two snapshots."""
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None:
            changes.append(f"added {path}")
        elif new is None:
            changes.append(f"removed {path}")
        elif old != new:
            changes.append(f"changed {path}: {old} -> {new}")
    return changes
