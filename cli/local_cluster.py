"""A scheduler and one worker on this machine, started and always stopped (`tenslora demo`, bench).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.scheduler_port import open_scheduler
from launch.processes import WaitTimedOut, free_port, project_env, stop_group
from launch.server import RunningServer, ServerExited, mint_tokens, sqlite_url, start_server
from protocol.client import ApiClient
from protocol.errors import ApiRejected
from protocol.port import SchedulerPort
from protocol.vocabulary import TERMINAL, JobStatus, Role

POLL_S = 1.0


class ClusterError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LocalCluster:
    """``database_url`` None: SQLite in ``data_dir``, which also holds the logs and the spool."""

    def __init__(
        self,
        data_dir: Path | None,
        port: int,
        worker_flags: list[str],
        database_url: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="tenslora-demo-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or sqlite_url(self.data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_flags = worker_flags
        self.tokens: dict[str, str] = {}
        self.server: RunningServer | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        #: Set by Ctrl-C under ``ctrl_c_stops()``; the waits raise KeyboardInterrupt when set.
        self.interrupted = threading.Event()

    @contextlib.contextmanager
    def ctrl_c_stops(self) -> Iterator[None]:
        """Ctrl-C sets ``interrupted`` instead of raising wherever the main thread happens to be.

        An interrupt raised asynchronously can land inside an HTTP client's lock and leave it
        held, so the client's close hangs and the worker and server are never stopped; the
        waits below raise KeyboardInterrupt at a safe point instead. A second Ctrl-C interrupts
        at once, as usual. Main thread only (Python delivers signals there).
        """

        def on_ctrl_c(_signum: int, _frame: Any) -> None:
            self.interrupted.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with Ctrl-C off (nohup &)
            yield
            return
        previous = signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``; KeyboardInterrupt if Ctrl-C came (before or during)."""
        if self.interrupted.wait(seconds):
            raise KeyboardInterrupt

    # ---- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        from rich.console import Console

        Console(stderr=True).print(
            f"database [bold]{self.database_url}[/bold]; logs in {self.data_dir}"
        )
        self.tokens = mint_tokens(self.database_url, (Role.admin, Role.worker), prefix="local")
        try:
            self.server = start_server(
                self.database_url, self.data_dir / "server.log", self.port, sleep=self.pause,
                # Bound to 127.0.0.1: this machine's user may read the dashboard without a token.
                env={"TENSLORA_DASHBOARD_PUBLIC": "1"},
            )
        except WaitTimedOut:
            raise ClusterError("the server did not answer within 60 s; see "
                               f"{self.data_dir}/server.log") from None
        except ServerExited as exited:
            raise ClusterError(self._exited("server", exited.returncode)) from None
        with (self.data_dir / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "worker", "--api", self.url, "--name", "local",
                 "--drain-timeout", "0", "--spool-dir", str(self.data_dir / "spool"),
                 *self.worker_flags],
                env=project_env(TENSLORA_TOKEN=self.tokens[Role.worker]),
                stdout=log, stderr=subprocess.STDOUT,
                # Own session: Ctrl-C reaches only this process, which stops the others in order.
                start_new_session=True,
            )

    # ---- run -----------------------------------------------------------------------------------

    def _api(self) -> SchedulerPort:
        return open_scheduler(self.url, self.tokens[Role.admin])

    def submit(self, body: dict[str, Any]) -> int:
        with self._api() as api:
            try:
                sweep = api.submit_sweep(body)
            except ApiRejected as exc:
                raise ClusterError(f"the sweep was refused: {exc.detail}", 2) from None
        print(f"submitted sweep {sweep.id}: {sweep.n_jobs} jobs")
        return sweep.id

    def jobs(self, sweep_id: int) -> list[dict[str, Any]]:
        """Every job of the sweep (paged past the API's 1,000 a call), as the API's JSON."""
        with self._api() as api:
            return [job.model_dump(mode="json") for job in api.iter_jobs(sweep_id)]

    def follow(self, sweep_id: int, deadline: float) -> None:
        """A progress bar until every job of the sweep has ended."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress, self._api() as api:
            bar = progress.add_task("queued", total=None)
            while True:
                self.check_alive()
                sweep = api.get_sweep(sweep_id)
                counts = sweep.counts
                ended = sum(counts.get(status, 0) for status in TERMINAL)
                running = counts.get(JobStatus.running, 0)
                failed = counts.get(JobStatus.failed, 0)
                progress.update(bar, total=sweep.n_jobs, completed=ended,
                                description=f"running {running}, failed {failed}")
                if ended >= sweep.n_jobs:
                    return
                if time.monotonic() > deadline:
                    raise ClusterError("the sweep did not finish in time (see --timeout)")
                self.pause(POLL_S)

    def print_results(
        self,
        sweep_id: int,
        group_by: list[str],
        compare_to: str | None = None,
        metrics: tuple[str, ...] | None = None,
    ) -> None:
        """The results table: only ``metrics`` when given and the results carry any of them,
        else every metric. A baseline that matches no row (its runs failed) is said, and the
        table printed without it."""
        from cli.results_format import keep_metrics, render

        baseline = [compare_to] if compare_to else []
        with self._api() as api:
            try:
                results = api.sweep_results(sweep_id, group_by, baseline)
            except ApiRejected as exc:
                if not baseline:
                    raise ClusterError(f"the results were refused: {exc.detail}", 2) from None
                print(f"no comparison: {exc.detail}")
                results = api.sweep_results(sweep_id, group_by)
            failed = api.job_page(sweep_id, JobStatus.failed, limit=1)
        render(keep_metrics(results.model_dump(mode="json"), metrics or ()), "table")
        if failed.total:
            print(f"{failed.total} runs failed; the first: {failed.items[0].error}")

    def print_best_adapter(self, sweep_id: int, metric: str = "accuracy") -> None:
        """The succeeded run with the best ``metric`` that kept an adapter: where it is, and
        its HOSVD mode analysis (what ``tenslora analyze`` prints)."""
        with self._api() as api:
            runs = [job for job in api.jobs(sweep_id, JobStatus.succeeded)
                    if isinstance((job.result or {}).get(metric), int | float)]
            runs.sort(key=lambda job: (-float((job.result or {})[metric]), job.id))
            for job in runs:
                try:
                    archive = api.download_adapter(job.id)
                except ApiRejected:  # this run kept none (its upload was refused)
                    continue
                break
            else:
                print("no succeeded run kept an adapter")
                return
        from cli.analyze_cmd import print_spectra
        from tenslora.analysis.hosvd import adapter_mode_spectra
        from tenslora.core.archive import extract_adapter

        folder = extract_adapter(archive, self.data_dir / f"job-{job.id}-adapter")
        method = job.config.get("adapter", {}).get("method", "?")
        print(f"best run: job #{job.id} ({method}), {metric} "
              f"{float((job.result or {})[metric]):.4f}; its adapter is in {folder}\n"
              f"  download: {self.url}/jobs/{job.id}/adapter.zip, or "
              f"tenslora job adapter {job.id} --url {self.url} --token <token>")
        print_spectra(adapter_mode_spectra(folder))
        print(f"  (tenslora analyze {folder} prints this again)")

    def print_where(self) -> None:
        with ApiClient(self.url, None) as api:
            has_dashboard = api.serves_dashboard()
        if has_dashboard:
            print(f"dashboard: {self.url}/ (read-only, no sign-in)")
        print(f"API docs:  {self.url}/docs")
        print(f"logs in {self.data_dir}; the database stays, to look again later:\n"
              f"  TENSLORA_DASHBOARD_PUBLIC=1 TENSLORA_DATABASE_URL={self.database_url} "
              f"tenslora serve --port {self.port}")

    def serve_until_interrupted(self) -> None:
        self._stop_worker()
        print("serving; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            while self.server and self.server.process.poll() is None:
                self.pause(1)

    def check_alive(self) -> None:
        """Raises ``ClusterError`` with the end of its log if the server or the worker exited."""
        server = self.server.process if self.server else None
        for name, process in (("server", server), ("worker", self.worker)):
            if process is not None and process.poll() is not None:
                raise ClusterError(self._exited(name, process.returncode))

    def _exited(self, name: str, returncode: int | None) -> str:
        log = (self.data_dir / f"{name}.log").read_text(errors="replace")
        tail = "\n".join(log.strip().splitlines()[-15:])
        return f"the {name} exited with code {returncode}:\n{tail}"

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Worker first (it gives unfinished jobs back), then the server."""
        self._stop_worker()
        if self.server is not None:
            self.server.stop()

    def _stop_worker(self) -> None:
        """SIGTERM to the worker alone (it drains and stops its Ray), then SIGKILL what is left
        of its group."""
        if self.worker is not None:
            stop_group(self.worker, grace_s=30, leader_signal=signal.SIGTERM)
