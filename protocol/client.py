"""THE typed client of the scheduler's HTTP API: the worker, the Ray Tune path and the CLI all
talk to the API through ``ApiClient`` and nothing else does. Its reading, submitting and
cancelling calls are ``protocol.port.SchedulerPort``'s, over HTTP.

Every call returns the models of ``protocol.models`` and raises the errors of ``protocol.errors``.
Connection errors and 5xx answers are retried with backoff for ``retry_for_s`` seconds (the
worker's calls; the CLI passes 0 for one attempt), then raise ``ApiUnavailable`` (the caller
spools what must not be lost). A 409 is ``LeaseLost``; any other 4xx is ``ApiRejected`` and is
not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from protocol.errors import ApiError, ApiRejected, ApiUnavailable, LeaseLost, rejection
from protocol.models import (
    MAX_PAGE,
    AdapterStored,
    ClaimPackResponse,
    ClaimResponse,
    EstimateList,
    EstimateOut,
    HeartbeatResponse,
    JobList,
    JobOut,
    MetricsOut,
    ResultsOut,
    SweepList,
    SweepOut,
    TokenCreated,
    WorkerList,
)
from protocol.port import SchedulerPort
from protocol.report import JobReport
from protocol.vocabulary import REPORTED, JobStatus, Outcome, Role

__all__ = [
    "ApiClient", "ApiError", "ApiRejected", "ApiUnavailable", "Lease", "LeaseLost",
    "quiet_http_logs",
]

log = logging.getLogger(__name__)

#: Result entry naming why the API refused the job's adapter (the result itself is kept).
ADAPTER_ERROR = "adapter_error"
METRICS_PER_REQUEST = 5000  # the API takes at most 10,000 points a call


@dataclass(frozen=True)
class Lease:
    """A claimed job: what to run (``spec``) and the lease that every later call must carry."""

    claim: ClaimResponse

    @property
    def job(self) -> JobOut:
        return self.claim.job

    @property
    def job_id(self) -> int:
        return self.claim.job.id

    @property
    def lease_id(self) -> str:
        return self.claim.lease_id

    @property
    def spec(self) -> dict[str, Any]:
        return self.claim.job.config

    @property
    def attempt(self) -> int:
        return self.claim.job.attempt

    @property
    def lease_expires_at(self) -> datetime:
        expires = self.claim.lease_expires_at
        return expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # the API speaks UTC


@dataclass(frozen=True)
class PackLeases:
    """A claimed pack: one lease per job, and the memory the pack is expected to hold."""

    pack_id: str | None  # None when one job came alone
    leases: list[Lease]
    memory_estimate_mb: int


def quiet_http_logs() -> None:
    """httpx logs one INFO line per request (one per claim poll); keep only its warnings."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


class ApiClient(SchedulerPort):
    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        retry_for_s: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry_for_s = retry_for_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    # ---- the worker's calls (one job's lease) ----------------------------------------------

    def claim(
        self,
        worker_id: str,
        device: str,
        free_memory_mb: int,
        job_id: int | None = None,
        device_memory_mb: int | None = None,
    ) -> Lease | None:
        """The next job whose memory estimate fits, or None when nothing does.

        ``job_id`` asks for that job only (a Ray Tune trial of ``tenslora sweep tune``).
        ``device_memory_mb``: the device's whole memory; the API refuses a reported peak above it.
        """
        body: dict[str, Any] = {
            "worker_id": worker_id, "device": device, "free_memory_mb": int(free_memory_mb)
        }
        if job_id is not None:
            body["job_id"] = job_id
        if device_memory_mb is not None:
            body["device_memory_mb"] = int(device_memory_mb)
        response = self._request("POST", "/api/v1/jobs/claim", json=body)
        if response.status_code == 204:
            return None
        return Lease(ClaimResponse.model_validate(response.json()))

    def claim_pack(
        self,
        worker_id: str,
        device: str,
        free_memory_mb: int,
        max_jobs: int,
        device_memory_mb: int | None = None,
    ) -> PackLeases | None:
        """Up to ``max_jobs`` jobs of one pack key that fit together, each with its own lease
        (one ``worker.lease.LeaseKeeper`` per lease); None when nothing fits."""
        body: dict[str, Any] = {"worker_id": worker_id, "device": device,
                                "free_memory_mb": int(free_memory_mb), "max_jobs": max_jobs}
        if device_memory_mb is not None:
            body["device_memory_mb"] = int(device_memory_mb)
        response = self._request("POST", "/api/v1/jobs/claim-pack", json=body)
        if response.status_code == 204:
            return None
        pack = ClaimPackResponse.model_validate(response.json())
        return PackLeases(
            pack.pack_id, [Lease(claim) for claim in pack.claims], pack.memory_estimate_mb
        )

    def heartbeat(self, lease: Lease, *, retry_for_s: float | None = None) -> HeartbeatResponse:
        """Extends the lease; ``.cancelled`` says the job's sweep was cancelled: stop it now."""
        response = self._request(
            "POST", f"/api/v1/jobs/{lease.job_id}/heartbeat",
            json={"lease_id": lease.lease_id}, retry_for_s=retry_for_s,
        )
        return HeartbeatResponse.model_validate(response.json())

    def post_metrics(
        self, job_id: int, lease_id: str, points: list[dict[str, Any]], **retry: float
    ) -> None:
        for start in range(0, len(points), METRICS_PER_REQUEST):
            body = {"lease_id": lease_id, "points": points[start : start + METRICS_PER_REQUEST]}
            self._request("POST", f"/api/v1/jobs/{job_id}/metrics", json=body, **retry)

    def complete(
        self, job_id: int, lease_id: str, result: dict[str, Any], **retry: float
    ) -> JobOut:
        body = {"lease_id": lease_id, "result": result}
        return self._job("POST", f"/api/v1/jobs/{job_id}/complete", json=body, **retry)

    def fail(self, job_id: int, lease_id: str, error: str, **retry: float) -> JobOut:
        body = {"lease_id": lease_id, "error": error}
        return self._job("POST", f"/api/v1/jobs/{job_id}/fail", json=body, **retry)

    def release(self, job_id: int, lease_id: str) -> JobOut:
        """Gives the lease back (on drain): the job goes back to the queue at once."""
        return self._job(
            "POST", f"/api/v1/jobs/{job_id}/release", json={"lease_id": lease_id}, retry_for_s=2.0
        )

    def upload_adapter(
        self, job_id: int, lease_id: str, archive: bytes, **retry: float
    ) -> AdapterStored:
        """Hands the job's trained adapter (a zip of ``save_adapter``'s folder) to the API."""
        response = self._request(
            "PUT", f"/api/v1/jobs/{job_id}/adapter", params={"lease_id": lease_id},
            content=archive, headers={"Content-Type": "application/zip"}, **retry,
        )
        return AdapterStored.model_validate(response.json())

    def send_report(self, report: JobReport, adapter: bytes | None = None, **retry: float) -> None:
        """Sends a finished job's report (see ``worker.lease``): its metrics, its adapter (a
        zip, when it trained one), then the outcome: ``complete`` or ``fail``.

        An adapter the API refuses for good (413 too large, 422) is left out and the refusal
        noted in the result as ``adapter_error``: the result is never lost for it. ``retry`` may
        hold ``retry_for_s``, this call's retry window.
        """
        if report.outcome not in REPORTED:
            raise ValueError(f"job {report.job_id}: a {report.outcome} job is not reported")
        job_id, lease_id = report.job_id, report.lease_id
        if report.points:
            self.post_metrics(job_id, lease_id, list(report.points), **retry)
        if report.outcome is Outcome.failed:
            self.fail(job_id, lease_id, report.error, **retry)
            return
        result = report.result
        if adapter is not None:
            try:
                self.upload_adapter(job_id, lease_id, adapter, **retry)
            except LeaseLost:
                raise
            except ApiRejected as refused:
                log.warning("job %s: the API refused its adapter: %s", job_id, refused)
                result = {**result, ADAPTER_ERROR: f"HTTP {refused.status_code}: "
                                                   f"{refused.detail}"}
        self.complete(job_id, lease_id, result, **retry)

    def check_token(self) -> None:
        """Raises ``ApiRejected`` when the API refuses the token, ``ApiUnavailable`` when down."""
        self.workers(seen_within_s=1)

    # ---- reading and submitting (CLI, Tune driver) -----------------------------------------

    def healthy(self) -> bool:
        """The server answers ``/healthz`` (one attempt, no retry)."""
        try:
            return self._http.get("/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def serves_dashboard(self) -> bool:
        """The server's ``/`` is the HTML dashboard (it is off unless configured)."""
        try:
            page = self._http.get("/", timeout=5)
        except httpx.HTTPError:
            return False
        return page.status_code == 200 and "html" in page.headers.get("content-type", "")

    def submit_sweep(self, body: dict[str, Any], **retry: float) -> SweepOut:
        response = self._request("POST", "/api/v1/sweeps", json=body, **retry)
        return SweepOut.model_validate(response.json())

    def list_sweeps(self, limit: int = 50, offset: int = 0, **retry: float) -> SweepList:
        params = {"limit": limit, "offset": offset}
        response = self._request("GET", "/api/v1/sweeps", params=params, **retry)
        return SweepList.model_validate(response.json())

    def get_sweep(self, sweep_id: int, **retry: float) -> SweepOut:
        response = self._request("GET", f"/api/v1/sweeps/{sweep_id}", **retry)
        return SweepOut.model_validate(response.json())

    def cancel_sweep(self, sweep_id: int, **retry: float) -> SweepOut:
        response = self._request("POST", f"/api/v1/sweeps/{sweep_id}/cancel", **retry)
        return SweepOut.model_validate(response.json())

    def sweep_results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = (),
        **retry: float,
    ) -> ResultsOut:
        # The API takes one path per group_by (an enum); callers may also join them with commas.
        paths = [path.strip() for value in group_by for path in value.split(",") if path.strip()]
        params = {"group_by": paths, "compare_to": list(compare_to)}
        response = self._request("GET", f"/api/v1/sweeps/{sweep_id}/results", params=params,
                                 **retry)
        return ResultsOut.model_validate(response.json())

    def job_page(
        self, sweep_id: int | None = None, status: JobStatus | None = None,
        limit: int = MAX_PAGE, offset: int = 0, **retry: float,
    ) -> JobList:
        """One page of ``/jobs`` (at most 1,000): ``iter_jobs`` walks them all."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        params.update({k: v for k, v in (("sweep_id", sweep_id), ("status", status)) if v})
        response = self._request("GET", "/api/v1/jobs", params=params, **retry)
        return JobList.model_validate(response.json())

    def get_job(self, job_id: int, **retry: float) -> JobOut:
        return self._job("GET", f"/api/v1/jobs/{job_id}", **retry)

    def download_adapter(self, job_id: int, **retry: float) -> bytes:
        """The succeeded job's adapter: a zip of ``adapter_model.safetensors`` and
        ``adapter_config.json``."""
        return self._request("GET", f"/api/v1/jobs/{job_id}/adapter", **retry).content

    def job_metrics(self, job_id: int, **retry: float) -> MetricsOut:
        response = self._request("GET", f"/api/v1/jobs/{job_id}/metrics", **retry)
        return MetricsOut.model_validate(response.json())

    def workers(self, seen_within_s: float | None = None, **retry: float) -> WorkerList:
        params = {"seen_within_s": seen_within_s} if seen_within_s is not None else {}
        response = self._request("GET", "/api/v1/workers", params=params, **retry)
        return WorkerList.model_validate(response.json())

    def estimates(self, **retry: float) -> EstimateList:
        """The learned memory estimates, one per job shape (admin)."""
        return EstimateList.model_validate(
            self._request("GET", "/api/v1/estimates", **retry).json()
        )

    def reset_estimate(self, shape: str, **retry: float) -> EstimateOut:
        """Forget what was learned about ``shape``; its queued jobs go back to the formula."""
        path = f"/api/v1/estimates/{quote(shape, safe='')}"
        return EstimateOut.model_validate(self._request("DELETE", path, **retry).json())

    def create_token(self, role: Role, name: str, **retry: float) -> TokenCreated:
        body = {"role": role, "name": name}
        response = self._request("POST", "/api/v1/tokens", json=body, **retry)
        return TokenCreated.model_validate(response.json())

    # ---- the one request loop ---------------------------------------------------------------

    def _job(self, method: str, path: str, **kwargs: Any) -> JobOut:
        return JobOut.model_validate(self._request(method, path, **kwargs).json())

    def _request(
        self, method: str, path: str, *, retry_for_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_for_s if retry_for_s is None else retry_for_s)
        delay = 0.2
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                problem, status, detail = f"{type(error).__name__}: {error}", None, ""
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise rejection(response.status_code, _detail(response), path)
                status, detail = response.status_code, _detail(response)
                problem = f"HTTP {status}: {detail}"
            if time.monotonic() + delay > deadline:
                raise ApiUnavailable(f"{self.api_url}{path} unreachable: {problem}", status, detail)
            log.debug("retrying %s in %.1fs (%s)", path, delay, problem)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _detail(response: httpx.Response) -> str:
    """The API's ``detail`` (a text, or FastAPI's list of validation errors) as one text."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:300]
    return detail if isinstance(detail, str) else str(detail)
