"""One entry point over every criterion: which measure, which defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.response.domain.bor import BorSettings, best_overall_response
from services.response.domain.choi import assess_choi
from services.response.domain.easl import assess_easl
from services.response.domain.irecist import assess_irecist
from services.response.domain.model import Assessment, LocalTreatment, ResponseInputError
from services.response.domain.mrecist import assess_mrecist
from services.response.domain.percist import assess_percist
from services.response.domain.recist import assess_recist
from services.response.domain.result import CriterionResult
from services.response.domain.series import build_series

__all__ = ["CRITERIA", "TREATED_DEFAULT_EXCLUDED", "Evaluation", "evaluate"]

#: Criterion codes of the public contract (`$tumor-response?criteria=`).
CRITERIA = ("recist-1.1", "mrecist", "choi", "percist", "irecist", "easl")

#: Lesions treated locally after baseline are measured and flagged under every criterion: the
#: response to the liver-directed therapy is what is being assessed, and published series of it
#: report PR for the treated targets (the randomised pilot of radioembolisation vs bland
#: embolisation in small-intestinal NET; the RFA/TACE series of thyroid-cancer liver metastases,
#: J. Gastrointest. Cancer 52:823, 2021). A lesion treated by a *further* local therapy during
#: follow-up is flagged too; protocols that follow RECIST 1.1 §3.1.3 strictly make it not
#: evaluable, which ``exclude_treated=True`` (``treatedLesions=not-evaluable``) selects.
TREATED_DEFAULT_EXCLUDED = dict.fromkeys(("recist-1.1", "mrecist", "choi", "percist", "irecist",
                                          "easl"), False)


@dataclass(frozen=True)
class Evaluation:
    result: CriterionResult
    best: str
    best_notes: tuple[str, ...]


def evaluate(criterion: str, assessments: Sequence[Assessment],
             treatments: Sequence[LocalTreatment] = (), *, bor: BorSettings | None = None,
             exclude_treated: bool | None = None) -> Evaluation:
    """Assess every follow-up under ``criterion`` and its best overall response."""
    if criterion not in CRITERIA:
        raise ResponseInputError(
            f"unknown criterion {criterion!r}; expected one of {', '.join(CRITERIA)}", "criteria")
    exclude = TREATED_DEFAULT_EXCLUDED[criterion] if exclude_treated is None else exclude_treated
    series = build_series(assessments, treatments, require_targets=criterion in ("mrecist", "easl", "choi"))
    result: CriterionResult
    if criterion == "recist-1.1":
        result = assess_recist(series, exclude_treated=exclude)
    elif criterion == "mrecist":
        result = assess_mrecist(series, exclude_treated=exclude)
    elif criterion == "easl":
        result = assess_easl(series, exclude_treated=exclude)
    elif criterion == "choi":
        result = assess_choi(series, exclude_treated=exclude)
    elif criterion == "irecist":
        result = assess_irecist(series, exclude_treated=exclude)
    else:
        result = assess_percist(series, exclude_treated=exclude)
    settings = bor or BorSettings()
    best, notes = best_overall_response(result.baseline_date, _bor_points(result, settings), settings)
    return Evaluation(result, best, notes)


#: The stable category a carried-on partial response stands for, by criterion family.
_MEASURED_STABLE = {"PR": "SD", "iPR": "iSD"}


def _bor_points(result: CriterionResult, settings: BorSettings) -> list[tuple[date, str]]:
    """Time points for the best overall response. When confirmation is required, a PR carried
    on from an earlier response (measurement alone SD) counts as SD: the EORTC RECIST FAQ
    carries a PR on only once it is "assigned, and confirmed (if required)", and Table 3 makes
    "PR, SD" an SD."""
    return [(v.date, _MEASURED_STABLE.get(v.overall, v.overall)
             if settings.confirmation_days and v.continued_response else v.overall)
            for v in result.visits]
