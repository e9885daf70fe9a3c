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
from sentinel import crypto  # noqa: E402


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


# -- plain and encrypted stores ---------------------------------------------

PASSPHRASE = "test passphrase, not secret"


class Opener:
    """Opens stores of one kind: plain, or encrypted with `PASSPHRASE`.

    Encrypted stores use `crypto.TEST_PARAMS`, the documented test-only
    Argon2id cost (`Store.new(..., kdf=...)`), so a test can open many;
    production stores never do.
    """

    def __init__(self, encrypted: bool) -> None:
        self.encrypted = encrypted

    def __call__(
        self, path: str | os.PathLike[str], **options: object
    ) -> sentinel.Store:
        if self.encrypted:
            return sentinel.Store.new(
                path, PASSPHRASE, kdf=crypto.TEST_PARAMS, **options
            )
        return sentinel.Store.new(path, **options)

    def __repr__(self) -> str:
        return "encrypted" if self.encrypted else "plain"


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def opener(request: pytest.FixtureRequest) -> Opener:
    """Open (or create) a store of the parametrized kind."""
    return Opener(request.param)


@pytest.fixture
def any_store(
    opener: Opener, store_path: pathlib.Path
) -> Iterator[sentinel.Store]:
    """A fresh store, once plain and once encrypted: the same contract
    must hold for both."""
    opened = opener(store_path)
    try:
        yield opened
    finally:
        opened.close()
