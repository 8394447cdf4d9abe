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


class HttpClient:
    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(503, f"cannot reach {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, str(detail))
        return response.json()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/v1/sweeps", json=body)

    def list(self, limit: int) -> dict[str, Any]:
        return self._call("GET", "/api/v1/sweeps", params={"limit": limit})

    def show(self, sweep_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/sweeps/{sweep_id}")

    def cancel(self, sweep_id: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/sweeps/{sweep_id}/cancel")

    def results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> dict[str, Any]:
        params = {"group_by": list(group_by), "compare_to": list(compare_to)}
        return self._call("GET", f"/api/v1/sweeps/{sweep_id}/results", params=params)


class LocalClient:
    """The scheduler functions on TENSLORA_DATABASE_URL (schema upgraded first)."""

    def __init__(self) -> None:
        from scheduler.db import Database
        from scheduler.migrate import upgrade
        from scheduler.settings import Settings

        self.settings = Settings()
        upgrade(self.settings.database_url)
        self.database = Database(self.settings.database_url)

    def _run(self, operation: Any, write: bool = False) -> dict[str, Any]:
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
        from api.schemas import SweepCreate
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
        from api.schemas import ResultsOut
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
