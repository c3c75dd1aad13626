"""SQL conditions for a parsed FHIR search (:class:`~gateway.store.search_params.SearchQuery`)
on the embedded store's tables: ``_id``, ``_lastUpdated`` ranges, token and reference
parameters through their index tables (FHIR R4 §3.1.1 Search)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Table, and_, exists, or_, select
from sqlalchemy.sql.elements import ColumnElement

from gateway.store.search_params import (
    IdCriterion,
    LastUpdatedCriterion,
    ReferenceCriterion,
    SearchQuery,
    TokenCriterion,
)

__all__ = ["search_conditions"]


def search_conditions(tables: Mapping[str, Table], query: SearchQuery) -> list[ColumnElement[bool]]:
    """The WHERE conditions selecting the current, not deleted resources ``query`` matches."""
    r, t, ref = tables["resource"], tables["token"], tables["reference"]
    conditions: list[ColumnElement[bool]] = [r.c.resource_type == query.resource_type, r.c.deleted.is_(False)]
    for crit in query.criteria:
        if isinstance(crit, IdCriterion):
            conditions.append(r.c.resource_id.in_(crit.ids))
        elif isinstance(crit, LastUpdatedCriterion):
            alternatives = []
            for rng in crit.ranges:
                col = r.c.last_updated_us
                alternatives.append({
                    "eq": and_(col >= rng.start_us, col < rng.end_us),
                    "ne": or_(col < rng.start_us, col >= rng.end_us),
                    "gt": col >= rng.end_us,
                    "ge": col >= rng.start_us,
                    "lt": col < rng.start_us,
                    "le": col < rng.end_us,
                }[rng.prefix])
            conditions.append(or_(*alternatives))
        elif isinstance(crit, TokenCriterion):
            token_alts = []
            for tok in crit.values:
                parts = []
                if tok.system is not None:
                    parts.append(t.c.system == tok.system)
                if tok.code is not None:
                    parts.append(t.c.code == tok.code)
                token_alts.append(and_(*parts))
            conditions.append(exists(select(t.c.resource_id).where(
                t.c.resource_type == r.c.resource_type, t.c.resource_id == r.c.resource_id,
                t.c.param == crit.param, or_(*token_alts))))
        elif isinstance(crit, ReferenceCriterion):
            ref_alts = []
            for val in crit.values:
                cond = ref.c.target_id == val.resource_id
                if val.resource_type is not None:
                    cond = and_(cond, ref.c.target_type == val.resource_type)
                ref_alts.append(cond)
            conditions.append(exists(select(ref.c.resource_id).where(
                ref.c.resource_type == r.c.resource_type, ref.c.resource_id == r.c.resource_id,
                ref.c.param == crit.param, or_(*ref_alts))))
    return conditions
