"""The mode analysis that comes with an adapter (``adapter_analysis.json``, written by
``tenslora.analysis.hosvd.AdapterSpectra.to_dict``), as the job page reads it.

It arrives inside the uploaded zip, where no request check sees it: ``checked`` holds it to
``scheduler.json_check`` and to the shape below, and an analysis that fails either is left out
with a note (the adapter is kept: the analysis is optional). ``readable`` holds what is stored to
the same rules when the page is drawn, so a row stored before these checks (a lone surrogate, a
300-deep document, another shape) costs the page its table, never the page.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from scheduler.errors import TooLarge
from scheduler.json_check import JsonRefused, find_problem, parse_json
from tenslora.core.finite import finite_json
from tenslora.core.metric_contract import ADAPTER_ANALYSIS_FILE

Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0)]
#: A statistic of a mode; None for an all-zero tensor (NaN when computed).
Statistic = Annotated[float, Field(allow_inf_nan=False)] | None
#: More modes or constructions than any method has (the 7 constructions, at most 5 modes each).
MAX_ITEMS = 16


class _Read(BaseModel):
    # Only what the page shows is held to a shape; the rest (the spectra themselves) may be
    # anything that passed the JSON checks.
    model_config = ConfigDict(extra="ignore", strict=True)


class ModeRow(_Read):
    mode: Label
    size: Count
    entropy_norm: Statistic
    top1_energy: Statistic
    effective_rank: Statistic
    rank_kept: Count


class ConstructionAnalysis(_Read):
    method: Label
    tucker_ranks: dict[Label, Count] = Field(max_length=MAX_ITEMS)
    tucker_parameters: Count
    summary: list[ModeRow] = Field(max_length=MAX_ITEMS)


class AdapterAnalysis(_Read):
    """What the job page reads of an analysis (``api/dashboard/templates/job_main.html``)."""

    method: Label
    energy_kept: Annotated[float, Field(gt=0, le=1)]
    adapter_parameters: Count
    constructions: list[ConstructionAnalysis] = Field(max_length=MAX_ITEMS)


def checked(
    data: bytes, max_depth: int, max_values: int
) -> tuple[dict[str, Any] | None, str | None]:
    """An uploaded analysis to store (NaN as null), or None and why it was left out."""
    try:
        document = finite_json(parse_json(data, max_depth, max_values, ADAPTER_ANALYSIS_FILE))
        AdapterAnalysis.model_validate(document)
    except (JsonRefused, TooLarge) as refused:
        return None, f"{ADAPTER_ANALYSIS_FILE} was left out: {refused.detail}"
    except ValidationError as invalid:
        return None, f"{ADAPTER_ANALYSIS_FILE} was left out: {_first_error(invalid)}"
    return document, None


def readable(stored: Any, max_depth: int) -> tuple[dict[str, Any] | None, str | None]:
    """What the page shows of a stored analysis, or None and why it shows none."""
    if stored is None:
        return None, None
    problem = find_problem(stored, max_depth)
    if problem is not None:
        where = ".".join(str(part) for part in problem.loc)
        return None, f"The stored mode analysis cannot be shown: at {where or 'its top'}, " \
                     f"{problem.msg}."
    try:
        return AdapterAnalysis.model_validate(stored).model_dump(), None
    except ValidationError as invalid:
        return None, f"The stored mode analysis cannot be shown: {_first_error(invalid)}."


def _first_error(invalid: ValidationError) -> str:
    # Never the input itself: it is what failed the checks.
    error = invalid.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "its top"
    return f"{where}: {error['msg']}"
