"""Test-suite wiring: one kind marker per test (unit / integration / e2e), from its folder.

A test is marked by the folder it lives in (``tests/unit``, ``tests/integration``,
``tests/e2e``), unless it is marked ``integration`` or ``e2e`` itself (e.g. the PostgreSQL
parameter of a store test in ``tests/unit``): then that marker is its only kind. A test file
in any other folder fails the collection instead of running unmarked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_TESTS = Path(__file__).parent
KINDS = ("unit", "integration", "e2e")


def kind_of(item: pytest.Item) -> str:
    """The one kind of a test: its own integration or e2e marker, else its folder's."""
    own = [k for k in ("e2e", "integration") if item.get_closest_marker(k) is not None]
    if own:
        return own[0]
    parts = Path(str(item.fspath)).relative_to(_TESTS).parts
    folder = parts[0] if len(parts) > 1 else ""
    if folder not in KINDS:
        raise pytest.UsageError(
            f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/e2e, not in "
            f"{'tests/' + folder if folder else 'tests/'} (the folder gives the test its kind)")
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kinds = {item.nodeid: kind_of(item) for item in items}
    # A module may say ``pytestmark = pytest.mark.unit`` while one of its parameters is an
    # integration test: kind markers move from modules and classes onto each test, one per test,
    # so that `-m unit` and `-m integration` never both select it.
    for item in items:
        for node in item.listchain():
            node.own_markers[:] = [m for m in node.own_markers if m.name not in KINDS]
    for item in items:
        item.add_marker(getattr(pytest.mark, kinds[item.nodeid]))
