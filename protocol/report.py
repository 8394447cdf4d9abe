"""What a worker reports when a claimed job ends: one frozen record, built once from what the
job's process said, spooled to disk (``worker.spool``) and sent by ``ApiClient.send_report``.
Imports no pydantic: the spool reads it back in any process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.vocabulary import REPORTED, Outcome

#: The words of spool files written before ``Outcome`` (still read, so no spooled run is lost).
_EARLIER_OUTCOMES = {"complete": Outcome.succeeded, "fail": Outcome.failed}


@dataclass(frozen=True)
class JobReport:
    """One job attempt's end: ``succeeded`` with ``result``, or ``failed`` with ``error``."""

    job_id: int
    lease_id: str
    attempt: int
    outcome: Outcome
    result: dict[str, Any] = field(default_factory=dict)  # succeeded: the run's numbers
    error: str = ""  # failed: why
    #: metric points the lease keeper had not sent yet: they go before the outcome
    points: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        ending = ({"result": self.result} if self.outcome is Outcome.succeeded
                  else {"error": self.error})
        return {"job_id": self.job_id, "lease_id": self.lease_id, "attempt": self.attempt,
                "outcome": self.outcome.value, **ending, "points": list(self.points)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobReport:
        """The report ``to_json`` wrote; unknown keys are ignored. Raises ``ValueError`` for
        anything that is not the report of a succeeded or failed job."""
        try:
            word = data["outcome"]
            outcome = _EARLIER_OUTCOMES.get(word) or Outcome(word)
            report = cls(
                int(data["job_id"]), str(data["lease_id"]), int(data["attempt"]), outcome,
                result=dict(data.get("result") or {}), error=str(data.get("error") or ""),
                points=tuple(dict(point) for point in data.get("points") or ()),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a job report: {error}") from None
        if outcome not in REPORTED:
            raise ValueError(f"a {outcome} job is not reported")
        return report
