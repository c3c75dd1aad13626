"""SMART scope parsing and the read/write mapping of ``gateway.auth`` (pure functions).

Scope syntax: HL7 SMART App Launch 2.x, "Scopes and Launch Context" (v2 ``cruds`` letters in
that order, v1 ``read``/``write``/``*``).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import Scope, missing_scopes, parse_scopes

pytestmark = pytest.mark.unit


def covers(scope_text: str, resource_type: str, *, write: bool) -> bool:
    return any(s.covers(resource_type, write=write) for s in parse_scopes(scope_text))


@pytest.mark.parametrize(("scope", "reads", "writes"), [
    # v2 letters: read = r or s; write = c or u; d alone grants neither.
    ("system/Observation.rs", True, False),
    ("system/Observation.r", True, False),
    ("system/Observation.s", True, False),
    ("system/Observation.c", False, True),
    ("system/Observation.u", False, True),
    ("system/Observation.cu", False, True),
    ("system/Observation.d", False, False),
    ("system/Observation.cruds", True, True),
    ("system/Observation.crs", True, True),
    # v1
    ("system/Observation.read", True, False),
    ("system/Observation.write", False, True),
    ("system/Observation.*", True, True),
    # wildcards on the type
    ("system/*.*", True, True),
    ("system/*.cruds", True, True),
    ("system/*.read", True, False),
    ("system/*.rs", True, False),
    ("system/*.write", False, True),
    # user/ is honoured like system/
    ("user/Observation.rs", True, False),
    ("user/*.cruds", True, True),
])
def test_scope_grants(scope: str, reads: bool, writes: bool) -> None:
    assert covers(scope, "Observation", write=False) is reads
    assert covers(scope, "Observation", write=True) is writes


@pytest.mark.parametrize("scope", [
    "patient/Observation.rs",          # only within the token's patient (test_patient_scopes.py)
    "patient/*.*",
    "system/Observation.rs?category=laboratory",  # query-narrowed v2 scope
    "system/Observation.sr",           # letters out of order
    "system/Observation.rrs",          # repeated letter
    "system/Observation.x",            # unknown letter
    "system/Observation",              # no permissions
    "Observation.read",                # no context
    "system/observation.read",         # resource types are capitalised
    "openid", "fhirUser", "launch", "offline_access", "",
])
def test_scopes_that_grant_nothing(scope: str) -> None:
    assert not covers(scope, "Observation", write=False)
    assert not covers(scope, "Observation", write=True)


def test_scope_of_another_type_does_not_cover() -> None:
    assert covers("system/Observation.cruds", "Observation", write=True)
    assert not covers("system/Observation.cruds", "Patient", write=False)
    assert not covers("system/Observation.cruds", "Patient", write=True)


def test_claim_as_string_or_list() -> None:
    as_string = parse_scopes("openid system/Observation.rs  system/Patient.read")
    as_list = parse_scopes(["openid", "system/Observation.rs", "system/Patient.read"])
    assert as_string == as_list
    assert as_string == (Scope("system", "Observation", read=True, write=False),
                         Scope("system", "Patient", read=True, write=False))
    assert parse_scopes(None) == ()
    assert parse_scopes(42) == ()


def test_missing_scopes_names_each_uncovered_type() -> None:
    held = parse_scopes("system/Patient.rs system/Observation.c")
    assert missing_scopes(held, read=["Patient"], write=["Observation"]) == []
    missing = missing_scopes(held, read=["Patient", "Condition"],
                             write=["Observation", "Provenance"])
    assert len(missing) == 2
    assert "reading Condition needs system/Condition.r" in missing[0]
    assert "writing Provenance needs system/Provenance.c" in missing[1]


def test_missing_scopes_with_nothing_required_is_empty() -> None:
    assert missing_scopes((), read=(), write=()) == []
    assert missing_scopes((), read=["Observation"]) != []


_SUBSETS = ["".join(c) for n in range(1, 6) for c in itertools.combinations("cruds", n)]


@settings(max_examples=50, deadline=None)
@given(letters=st.sampled_from(_SUBSETS), type_wildcard=st.booleans())
def test_v2_letters_property(letters: str, type_wildcard: bool) -> None:
    """Every ordered subset of ``cruds``: read iff r or s, write iff c or u."""
    resource = "*" if type_wildcard else "ImagingStudy"
    scope = f"system/{resource}.{letters}"
    assert covers(scope, "ImagingStudy", write=False) is ("r" in letters or "s" in letters)
    assert covers(scope, "ImagingStudy", write=True) is ("c" in letters or "u" in letters)
    assert covers(scope, "Observation", write=False) is (
        type_wildcard and ("r" in letters or "s" in letters))
