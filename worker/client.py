"""The worker's side of the scheduler's HTTP API (``/api/v1/jobs/...``), with bounded retries.

Connection errors and 5xx answers are retried with backoff for ``retry_for`` seconds, then raise
``ApiUnavailable`` (the caller spools what must not be lost). A 409 means the lease is no longer the
job's live one (``LeaseLost``); any other 4xx is ``ApiRejected`` and is not retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

METRICS_PER_REQUEST = 5000  # the API takes at most 10,000 points a call


class ApiError(RuntimeError):
    pass


class ApiUnavailable(ApiError):
    """The API did not answer (or answered 5xx) for the whole retry window."""


class LeaseLost(ApiError):
    """409: the job was reaped, cancelled or handed to another worker; stop working on it."""


class ApiRejected(ApiError):
    """A 4xx other than 409 (bad token, wrong role, unknown job): retrying will not help."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code


@dataclass(frozen=True)
class Lease:
    """A claimed job: what to run (``spec``) and the lease that every later call must carry."""

    job_id: Any
    lease_id: str
    spec: dict[str, Any]
    attempt: int
    lease_expires_at: str | None
    job: dict[str, Any]  # the API's whole job record


class ApiClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        retry_for_s: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry_for_s = retry_for_s
        self._http = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def claim(
        self, worker_id: str, device: str, free_memory_mb: int, job_id: int | None = None
    ) -> Lease | None:
        """The next job whose memory estimate fits, or None when nothing does.

        ``job_id`` asks for that job only (a Ray Tune trial of ``tenslora sweep tune``).
        """
        body: dict[str, Any] = {
            "worker_id": worker_id, "device": device, "free_memory_mb": int(free_memory_mb)
        }
        if job_id is not None:
            body["job_id"] = job_id
        response = self._post("/api/v1/jobs/claim", body)
        if response.status_code == 204:
            return None
        data = response.json()
        job = data["job"]
        return Lease(
            job_id=job["id"],
            lease_id=str(data["lease_id"]),
            spec=job["config"],
            attempt=int(job.get("attempt", 1)),
            lease_expires_at=data.get("lease_expires_at"),
            job=job,
        )

    def heartbeat(self, lease: Lease, *, retry_for_s: float | None = None) -> bool:
        """Extends the lease; True when the job was cancelled and should stop now."""
        response = self._post(
            f"/api/v1/jobs/{lease.job_id}/heartbeat",
            {"lease_id": lease.lease_id},
            retry_for_s=retry_for_s,
        )
        data = response.json() if response.content else {}
        return bool(data.get("cancelled")) or data.get("status") == "cancelled"

    def check_token(self) -> None:
        """Raises ``ApiRejected`` when the API refuses the token, ``ApiUnavailable`` when down."""
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                response = self._http.get("/api/v1/workers", params={"seen_within_s": 1})
            except httpx.TransportError as error:
                if time.monotonic() > deadline:
                    raise ApiUnavailable(f"{self.api_url} unreachable: {error}") from None
                time.sleep(0.5)
                continue
            if response.status_code in (401, 403):
                raise ApiRejected(response.status_code, _detail(response))
            return

    def post_metrics(
        self, job_id: Any, lease_id: str, points: list[dict[str, Any]], **retry: float
    ) -> None:
        for start in range(0, len(points), METRICS_PER_REQUEST):
            body = {"lease_id": lease_id, "points": points[start : start + METRICS_PER_REQUEST]}
            self._post(f"/api/v1/jobs/{job_id}/metrics", body, **retry)

    def complete(self, job_id: Any, lease_id: str, result: dict[str, Any], **retry: float) -> None:
        body = {"lease_id": lease_id, "result": result}
        self._post(f"/api/v1/jobs/{job_id}/complete", body, **retry)

    def fail(self, job_id: Any, lease_id: str, error: str, **retry: float) -> None:
        self._post(f"/api/v1/jobs/{job_id}/fail", {"lease_id": lease_id, "error": error}, **retry)

    def release(self, job_id: Any, lease_id: str) -> None:
        """Gives the lease back (on drain): the job goes back to the queue at once."""
        self._post(
            f"/api/v1/jobs/{job_id}/release", {"lease_id": lease_id}, retry_for_s=2.0
        )

    def send_report(self, report: dict[str, Any], **retry: float) -> None:
        """Sends a finished job's report (see ``worker.spool``): its metrics, then the outcome.

        ``retry`` may hold ``retry_for_s``, this call's retry window.
        """
        job_id, lease_id = report["job_id"], report["lease_id"]
        if report.get("points"):
            self.post_metrics(job_id, lease_id, report["points"], **retry)
        if report["outcome"] == "complete":
            self.complete(job_id, lease_id, report["result"], **retry)
        else:
            self.fail(job_id, lease_id, report["error"], **retry)

    def _post(
        self, path: str, body: dict[str, Any], *, retry_for_s: float | None = None
    ) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_for_s if retry_for_s is None else retry_for_s)
        delay = 0.2
        while True:
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code == 409:
                    raise LeaseLost(f"{path}: {_detail(response)}")
                if response.status_code < 500:
                    raise ApiRejected(response.status_code, f"{path}: {_detail(response)}")
                problem = f"HTTP {response.status_code}: {_detail(response)}"
            if time.monotonic() + delay > deadline:
                raise ApiUnavailable(f"{self.api_url}{path} unreachable: {problem}")
            log.debug("retrying %s in %.1fs (%s)", path, delay, problem)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text[:200]
