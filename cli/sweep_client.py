"""Where `tenslora sweep` and `tenslora results` send their requests.

With ``--url`` (or TENSLORA_API_URL) they talk HTTP to a running server with a bearer token;
without, they open TENSLORA_DATABASE_URL directly and call the same ``scheduler`` functions the
server does. Both answer the API's JSON shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ClientError(Exception):
    """A request the service refused; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class SweepClient(Protocol):
    def submit(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def list(self, limit: int) -> dict[str, Any]: ...
    def show(self, sweep_id: int) -> dict[str, Any]: ...
    def cancel(self, sweep_id: int) -> dict[str, Any]: ...
    def results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> dict[str, Any]: ...
    def adapter(self, job_id: int) -> bytes: ...


class HttpClient:
    """The API's own client (``protocol.client``), one attempt a call, answering JSON."""

    def __init__(self, url: str, token: str | None) -> None:
        from protocol.client import ApiClient

        self._api = ApiClient(url, token, timeout_s=60, retry_for_s=0)

    def _call(self, call: Any) -> dict[str, Any]:
        return dict(self._answer(call).model_dump(mode="json"))

    def _answer(self, call: Any) -> Any:
        from protocol.errors import ApiError

        try:
            return call()
        except ApiError as exc:
            if exc.status_code is None:
                raise ClientError(503, f"cannot reach {self._api.api_url}: {exc}") from None
            raise ClientError(exc.status_code, exc.detail) from None

    def adapter(self, job_id: int) -> bytes:
        return bytes(self._answer(lambda: self._api.download_adapter(job_id)))

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(lambda: self._api.submit_sweep(body))

    def list(self, limit: int) -> dict[str, Any]:
        return self._call(lambda: self._api.list_sweeps(limit))

    def show(self, sweep_id: int) -> dict[str, Any]:
        return self._call(lambda: self._api.get_sweep(sweep_id))

    def cancel(self, sweep_id: int) -> dict[str, Any]:
        return self._call(lambda: self._api.cancel_sweep(sweep_id))

    def results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> dict[str, Any]:
        return self._call(lambda: self._api.sweep_results(sweep_id, group_by, compare_to))


class LocalClient:
    """The scheduler functions on TENSLORA_DATABASE_URL (schema upgraded first)."""

    def __init__(self) -> None:
        from scheduler.db import Database
        from scheduler.migrate import upgrade
        from scheduler.settings import Settings

        self.settings = Settings()
        upgrade(self.settings.database_url)
        self.database = Database(self.settings.database_url)

    def adapter(self, job_id: int) -> bytes:
        from scheduler import artifacts

        return bytes(self._run(lambda session: artifacts.get_adapter(session, job_id)[1]))

    def _run(self, operation: Any, write: bool = False) -> Any:
        from api.errors import STATUS
        from scheduler.errors import SchedulerError

        try:
            with self.database.session(write=write) as session:
                return operation(session)
        except SchedulerError as exc:
            raise ClientError(STATUS.get(type(exc), 400), exc.detail) from None

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        from pydantic import ValidationError

        from api.routes.sweeps import sweep_out
        from protocol.models import SweepCreate
        from scheduler import sweeps

        try:
            request = SweepCreate.model_validate(body)
        except ValidationError as exc:
            raise ClientError(422, _describe(exc)) from None
        return self._run(
            lambda session: sweep_out(
                sweeps.create_sweep(
                    session,
                    name=request.name,
                    base=request.base,
                    configs=request.configs,
                    grid=request.grid,
                    priority=request.priority,
                    max_jobs=self.settings.max_sweep_jobs,
                )
            ).model_dump(mode="json"),
            write=True,
        )

    def list(self, limit: int) -> dict[str, Any]:
        from api.routes.sweeps import sweep_out
        from scheduler import sweeps

        def operation(session: Any) -> dict[str, Any]:
            views, total = sweeps.list_sweeps(session, limit)
            return {"items": [sweep_out(v).model_dump(mode="json") for v in views], "total": total}

        return self._run(operation)

    def show(self, sweep_id: int) -> dict[str, Any]:
        from api.routes.sweeps import sweep_out
        from scheduler import sweeps

        return self._run(
            lambda session: sweep_out(sweeps.get_sweep(session, sweep_id)).model_dump(mode="json")
        )

    def cancel(self, sweep_id: int) -> dict[str, Any]:
        from api.routes.sweeps import sweep_out
        from scheduler import sweeps

        return self._run(
            lambda session: sweep_out(sweeps.cancel_sweep(session, sweep_id)).model_dump(
                mode="json"
            ),
            write=True,
        )

    def results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> dict[str, Any]:
        from protocol.models import ResultsOut
        from scheduler import results

        return self._run(
            lambda session: ResultsOut.model_validate(
                results.results_answer(session, sweep_id, group_by, compare_to)
            ).model_dump(mode="json")
        )


def _describe(error: Any) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'file'}: {item['msg']}"
        for item in error.errors()[:5]
    )


def make_client(url: str | None, token: str | None) -> SweepClient:
    return HttpClient(url, token) if url else LocalClient()
