"""Searches of the embedded store as SQL: criteria, order and includes over the index tables.

Date matching follows FHIR R4 §3.1.1.4.2 with both the search value and the indexed value as
ranges ``[start, end)``: ``eq`` the value lies within the search range, ``ne`` it does not,
``gt``/``lt`` it reaches above/below the search range, ``ge``/``le`` it reaches the range or
above/below, ``sa``/``eb`` it starts after/ends before the search range. Strings match from
their start (``:exact`` whole, ``:contains`` anywhere) case- and accent-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import FromClause, Table, and_, exists, func, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from gateway.store.indexing import normalise_text
from gateway.store.search_params import (
    ChainCriterion,
    Criterion,
    DateCriterion,
    DateRange,
    IdCriterion,
    Include,
    LastUpdatedCriterion,
    MissingCriterion,
    ReferenceCriterion,
    SortKey,
    StringCriterion,
    TokenCriterion,
)

__all__ = ["conditions", "include_rows", "order_by"]

Tables = Mapping[str, Table]
_INDEX_OF_TYPE = {"token": "token", "reference": "reference", "date": "date", "string": "string"}


def _owned(index: Table, resource: FromClause, param: str) -> ColumnElement[bool]:
    return and_(index.c.resource_type == resource.c.resource_type, index.c.resource_id == resource.c.resource_id,
                index.c.param == param)


def _instant(col: Any, rng: DateRange) -> ColumnElement[bool]:
    cases: dict[str, ColumnElement[bool]] = {
        "eq": and_(col >= rng.start_us, col < rng.end_us), "ne": or_(col < rng.start_us, col >= rng.end_us),
        "gt": col >= rng.end_us, "ge": col >= rng.start_us, "lt": col < rng.start_us, "le": col < rng.end_us,
        "sa": col >= rng.end_us, "eb": col < rng.start_us,
    }
    return cases[rng.prefix]


def _span(start: Any, end: Any, rng: DateRange) -> ColumnElement[bool]:
    cases: dict[str, ColumnElement[bool]] = {
        "eq": and_(start >= rng.start_us, end <= rng.end_us), "ne": or_(start < rng.start_us, end > rng.end_us),
        "gt": end > rng.end_us, "ge": end > rng.start_us, "lt": start < rng.start_us, "le": start < rng.end_us,
        "sa": start >= rng.end_us, "eb": end <= rng.start_us,
    }
    return cases[rng.prefix]


def _string(col: Any, value: str, mode: str) -> ColumnElement[bool]:
    text = normalise_text(value)
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if mode == "exact":
        return col == text  # type: ignore[no-any-return]
    if mode == "contains":
        return col.like(f"%{escaped}%", escape="\\")  # type: ignore[no-any-return]
    return col.like(f"{escaped}%", escape="\\")  # type: ignore[no-any-return]


def _criterion(tables: Tables, resource: FromClause, crit: Criterion) -> ColumnElement[bool]:
    if isinstance(crit, IdCriterion):
        return resource.c.resource_id.in_(crit.ids)
    if isinstance(crit, LastUpdatedCriterion):
        return or_(*(_instant(resource.c.last_updated_us, rng) for rng in crit.ranges))
    if isinstance(crit, MissingCriterion):
        index = tables[_INDEX_OF_TYPE[crit.param_type]]
        present = exists(select(index.c.resource_id).where(_owned(index, resource, crit.param)))
        return not_(present) if crit.missing else present
    if isinstance(crit, ChainCriterion):
        ref = tables["reference"]
        target = tables["resource"].alias("chained")
        matching = select(target.c.resource_id).where(
            target.c.resource_type == crit.target_type, target.c.deleted.is_(False),
            _criterion(tables, target, crit.inner))
        return exists(select(ref.c.resource_id).where(
            _owned(ref, resource, crit.param), ref.c.target_type == crit.target_type,
            ref.c.target_id.in_(matching)))
    index, match = _index_match(tables, crit)
    return exists(select(index.c.resource_id).where(_owned(index, resource, crit.param), match))


def _index_match(tables: Tables, crit: Criterion) -> tuple[Table, ColumnElement[bool]]:
    if isinstance(crit, TokenCriterion):
        t = tables["token"]
        alts = []
        for tok in crit.values:
            parts = []
            if tok.system is not None:
                parts.append(t.c.system == tok.system)
            if tok.code is not None:
                parts.append(t.c.code == tok.code)
            alts.append(and_(*parts))
        return t, or_(*alts)
    if isinstance(crit, ReferenceCriterion):
        ref = tables["reference"]
        ref_alts = []
        for val in crit.values:
            cond = ref.c.target_id == val.resource_id
            if val.resource_type is not None:
                cond = and_(cond, ref.c.target_type == val.resource_type)
            ref_alts.append(cond)
        return ref, or_(*ref_alts)
    if isinstance(crit, DateCriterion):
        d = tables["date"]
        return d, or_(*(_span(d.c.start_us, d.c.end_us, rng) for rng in crit.ranges))
    if isinstance(crit, StringCriterion):
        s = tables["string"]
        return s, or_(*(_string(s.c.value, v, crit.mode) for v in crit.values))
    raise TypeError(f"no SQL for {crit!r}")


def conditions(tables: Tables, resource_type: str, criteria: Sequence[Criterion]) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a search of ``resource_type`` (current, undeleted versions)."""
    r = tables["resource"]
    out: list[ColumnElement[bool]] = [r.c.resource_type == resource_type, r.c.deleted.is_(False)]
    out += [_criterion(tables, r, crit) for crit in criteria]
    return out


def order_by(tables: Tables, keys: Sequence[SortKey]) -> list[Any]:
    """ORDER BY for ``_sort`` (FHIR R4 §3.1.1.5.4): each key by its smallest value (``-`` its
    largest, descending), resources without a value last; ties by last update then id."""
    r = tables["resource"]
    columns: list[Any] = []
    for key in keys:
        if key.param == "_lastUpdated":
            columns.append(r.c.last_updated_us.desc() if key.descending else r.c.last_updated_us.asc())
            continue
        if key.param == "_id":
            columns.append(r.c.resource_id.desc() if key.descending else r.c.resource_id.asc())
            continue
        index = tables[_INDEX_OF_TYPE[key.param_type]]
        column = {"token": "code", "reference": "target_id", "date": "start_us", "string": "value"}[key.param_type]
        pick = func.max if key.descending else func.min
        value = select(pick(index.c[column])).where(_owned(index, r, key.param)).scalar_subquery()
        columns.append(value.is_(None))  # missing values last, either direction
        columns.append(value.desc() if key.descending else value.asc())
    columns += [r.c.last_updated_us.asc(), r.c.resource_id.asc()]
    return columns


def include_rows(tables: Tables, include: Include, page: Sequence[tuple[str, str]], reverse: bool) -> Any:
    """A SELECT of the ``content`` of the resources an ``_include`` (the page's references)
    or ``_revinclude`` (resources referring to the page) adds."""
    r, ref = tables["resource"], tables["reference"]
    if not page:
        return None
    if reverse:
        refers = or_(*(and_(ref.c.target_type == t, ref.c.target_id == i) for t, i in page))
        return select(r.c.resource_type, r.c.resource_id, r.c.content).where(
            r.c.resource_type == include.source_type, r.c.deleted.is_(False),
            exists(select(ref.c.resource_id).where(_owned(ref, r, include.param), refers)))
    of_page = or_(*(and_(ref.c.resource_type == t, ref.c.resource_id == i) for t, i in page))
    targets = select(ref.c.target_type, ref.c.target_id).where(of_page, ref.c.param == include.param)
    if include.target_type:
        targets = targets.where(ref.c.target_type == include.target_type)
    sub = targets.subquery()
    return select(r.c.resource_type, r.c.resource_id, r.c.content).join(
        sub, and_(r.c.resource_type == sub.c.target_type, r.c.resource_id == sub.c.target_id)).where(
        r.c.deleted.is_(False)).distinct()
