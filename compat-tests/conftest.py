"""Fixtures for the real-client compat tests.

- `weir`: the session's shared broker (default config); most tests use it and
  create their own uniquely named topics (`topic` fixture / lib.clients.unique_topic).
- `weir_factory`: per-test brokers with extra `--override`s, for tests that need
  their own config, kill -9 or restarts. Stopped (by PID) at the end of the test.

A failing test's report carries the tail of every involved broker's stderr.
"""

from __future__ import annotations

import atexit
import os
import re
import time
import warnings

import pytest

from lib.clients import unique_topic
from lib.weir import REGISTRY, Weir


def _kill_all() -> None:
    # Last resort (e.g. an interrupted session): SIGKILL only the brokers we started, by PID.
    for w in list(REGISTRY):
        try:
            w._kill()
        except Exception:  # noqa: BLE001
            pass


atexit.register(_kill_all)


# The whole run stays bounded even when a broken broker makes every test wait for its
# timeout: past this budget the remaining tests fail at once.
SUITE_BUDGET_S = float(os.environ.get("WEIR_COMPAT_BUDGET_S", "2400"))
_SESSION_START = time.monotonic()


def pytest_runtest_setup(item):
    spent = time.monotonic() - _SESSION_START
    if spent > SUITE_BUDGET_S:
        pytest.fail(f"compat suite time budget exhausted ({spent:.0f}s > WEIR_COMPAT_BUDGET_S={SUITE_BUDGET_S:.0f}s)",
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for w in REGISTRY:
            if w.starts:
                rep.sections.append((f"{w.name} stderr ({w.bootstrap})", w.tail()))


@pytest.fixture(scope="session")
def shared_weir():
    w = Weir(name="weir-shared")
    try:
        w.start()
    except Exception:
        w.cleanup()
        raise
    yield w
    w.cleanup()


@pytest.fixture
def weir(shared_weir) -> Weir:
    """The shared broker. If an earlier test crashed it, it is restarted (with a warning)."""
    if not shared_weir.alive():
        warnings.warn(f"shared broker had exited ({shared_weir.proc.returncode}); restarting\n{shared_weir.tail(20)}")
        shared_weir.start()
    return shared_weir


@pytest.fixture
def weir_factory():
    """make(overrides=None, name='weir') -> a started Weir of this test's own."""
    made: list[Weir] = []

    def make(overrides: dict | None = None, name: str = "weir") -> Weir:
        w = Weir(overrides, name=name)
        made.append(w)
        w.start()
        return w

    yield make
    for w in made:
        w.cleanup()


@pytest.fixture
def topic(request) -> str:
    """A fresh topic name derived from the test's name."""
    base = re.sub(r"[^A-Za-z0-9.-]+", "-", request.node.name).strip("-")
    return unique_topic(base[:60])
