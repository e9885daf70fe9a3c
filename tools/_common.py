"""Shared argument handling for the inspection scripts in tools/."""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sentinel  # noqa: E402


def open_store(path: str) -> sentinel.Store:
    """Open an existing store; refuse to create one by accident."""
    if not os.path.exists(os.path.join(path, "sentinel.json")):
        raise SystemExit(f"{path}: not a Sentinel store")
    return sentinel.Store.new(path)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def show(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
