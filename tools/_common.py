"""Shared argument handling for the inspection scripts in tools/."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sentinel  # noqa: E402


def open_store(path: str) -> sentinel.Store:
    """Open an existing store; refuse to create one by accident.

    An encrypted store's passphrase comes from the environment variable
    SENTINEL_PASSPHRASE, else from a prompt (never from the command
    line, where other users could read it).
    """
    if not os.path.exists(os.path.join(path, "sentinel.json")):
        raise SystemExit(f"{path}: not a Sentinel store")
    try:
        return sentinel.Store.new(path)
    except sentinel.PassphraseRequiredError:
        pass
    passphrase = os.environ.get("SENTINEL_PASSPHRASE")
    if passphrase is None:
        passphrase = getpass.getpass(f"passphrase for {path}: ")
    try:
        return sentinel.Store.new(path, passphrase)
    except sentinel.WrongPassphraseError as exc:
        raise SystemExit(f"{path}: {exc}") from exc


def run(main: Callable[[], None]) -> None:
    """Run a tool's `main`; a store's error becomes one line and exit
    status 1, since a traceback says nothing more to a user here."""
    try:
        main()
    except sentinel.SentinelError as exc:
        raise SystemExit(f"error: {type(exc).__name__}: {exc}") from None


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def show(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
