"""Shared fixtures and the end-of-run figures summary."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import figures  # noqa: E402

import sentinel  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run the slow tiers (thousands of crash trials, long fuzzing)",
    )


@pytest.fixture
def slow(request: pytest.FixtureRequest) -> bool:
    """True when the run asked for the slow tiers with --slow."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: pathlib.Path) -> Iterator[sentinel.Store]:
    opened = sentinel.Store.new(store_path)
    try:
        yield opened
    finally:
        opened.close()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter,
) -> None:
    lines = figures.summary()
    if not lines:
        return
    terminalreporter.section("reliability figures")
    for line in lines:
        terminalreporter.write_line(line)
    for bad in figures.violations():
        terminalreporter.write_line(f"FIGURE MUST BE ZERO: {bad}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if figures.violations() and exitstatus == 0:
        session.exitstatus = 1
