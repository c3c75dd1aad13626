"""The suite's kind markers: one per test, from its folder or its own marker; other folders fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kind_of

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[2]


class _Item:
    def __init__(self, relative: str, *marks: str) -> None:
        self.fspath = TESTS / relative
        self.nodeid = f"tests/{relative}::test_x"
        self._marks = set(marks)

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self._marks else None


@pytest.mark.parametrize(("path", "marks", "kind"), [
    ("unit/gateway/test_store_sql.py", (), "unit"),
    ("unit/gateway/test_store_sql.py", ("integration",), "integration"),
    ("integration/test_jobs_lifecycle.py", (), "integration"),
    ("e2e/test_serve.py", ("integration",), "integration"),
    ("e2e/test_serve.py", (), "e2e"),
])
def test_each_test_has_one_kind(path: str, marks: tuple[str, ...], kind: str) -> None:
    assert kind_of(_Item(path, *marks)) == kind  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["smoke/test_x.py", "test_x.py", "units/test_x.py"])
def test_a_test_outside_the_kind_folders_fails_collection(path: str) -> None:
    with pytest.raises(pytest.UsageError, match="tests/unit, tests/integration or tests/e2e"):
        kind_of(_Item(path))  # type: ignore[arg-type]


def test_this_suite_marks_every_collected_test_once(request: pytest.FixtureRequest) -> None:
    kinds = [m.name for m in request.node.iter_markers() if m.name in ("unit", "integration", "e2e")]
    assert kinds == ["unit"]
