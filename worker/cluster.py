"""The worker process as a Ray driver: starts Ray and the actors, watches them, drains them.

Kept apart from ``worker.main`` so the command line answers ``--help`` and bad flags without
importing Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import AuthenticationError, GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from protocol.client import ApiClient
from worker.actor import ActorConfig, GpuActor
from worker.probe import Device
from worker.ray_env import check_head_on_loopback, join_failure_hint
from worker.settings import WorkerSettings
from worker.spool import Spool

log = logging.getLogger("worker")

SPOOL_FLUSH_S = 2.0
ACTOR_START_S = 120
MAX_ACTOR_RESTARTS = 3  # per device; its running jobs come back through lease expiry
RAY_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # actors pass small dicts only


class Cluster:
    """``ray_temp_dir``: the folder ``worker.ray_env.prepare_local_head`` made for the worker's own
    Ray head (removed at the end); None when the worker joins a cluster."""

    def __init__(
        self,
        settings: WorkerSettings,
        probe_kind: str,
        devices: list[Device],
        ray_temp_dir: str | None = None,
    ) -> None:
        self.args = settings
        self.probe_kind = probe_kind
        self.devices = devices
        self.spool = Spool(settings.spool_path())
        self._stop = threading.Event()
        self._signals = 0
        self._actors: list[Any] = []
        self._launchers: list[Callable[[], Any]] = []
        self._ray_tmp = ray_temp_dir

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            try:
                self._start_ray()
            except (AuthenticationError, ConnectionError, RuntimeError, ValueError) as error:
                if self.args.ray_address:
                    log.error("cannot join the Ray cluster at %s: %s%s", self.args.ray_address,
                              error, join_failure_hint())
                else:
                    log.error("cannot start a local Ray instance: %s", error)
                return 1
            # Ray's core installs its own fatal-signal handler for SIGTERM: ours must win.
            self._install_signal_handlers()
            try:
                self._start_actors()
            except GetTimeoutError:
                log.error("Ray could not place the actors on this host within %ds: does Ray "
                          "here see the GPUs (ray status)?", ACTOR_START_S)
                return 1
            summaries, failed = self._watch()
        finally:
            self._shutdown_ray()
        self._write_stats(summaries)
        self._flush_spool(retry_for_s=2.0)
        if failed:
            log.error("stopped because of: %s", "; ".join(failed))
            return 1
        log.info("drained and stopped")
        return 0

    # ---- start ---------------------------------------------------------------------------------

    def _start_ray(self) -> None:
        if self.args.ray_address:
            ray.init(address=self.args.ray_address, include_dashboard=False)
            return
        if self._ray_tmp is None:
            raise RuntimeError("the worker's own Ray head needs worker.ray_env.prepare_local_head")
        if self.probe_kind == "nvml":  # Ray hands out exactly the GPUs --gpus named
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d.index) for d in self.devices)
        ray.init(
            num_cpus=os.cpu_count() or 1,
            num_gpus=len(self.devices),
            object_store_memory=RAY_OBJECT_STORE_BYTES,
            include_dashboard=False,
            _temp_dir=self._ray_tmp,
        )
        check_head_on_loopback()

    def _start_actors(self) -> None:
        args = self.args
        base = ActorConfig(
            api_url=args.api,
            token=args.token,
            worker_id=args.name,
            probe=self.probe_kind,
            spool_dir=str(self.spool.directory),
            log_dir=str(self.spool.directory / "logs"),
            driver_pid=os.getpid(),
            max_jobs=args.max_jobs_per_gpu,
            pack_size=args.pack_size_for(self.probe_kind),
            reserve_mb=args.reserve_for(self.probe_kind),
            poll_interval_s=args.poll_interval,
            # Fake GPUs run their jobs on the CPU: one thread each keeps packed jobs from fighting.
            cpu_threads=1 if self.probe_kind.startswith("fake:") else None,
        )
        # Pinned to this host: the actors watch this process and spool to this disk.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        for device in self.devices:
            # Each actor runs on the GPU --gpus named (Ray only counts one per actor).
            index = device.index
            self._launchers.append(
                partial(GpuActor.options(scheduling_strategy=here).remote,  # type: ignore[attr-defined]
                        base, index)
            )
        if args.cpu_slots:
            cpu = ActorConfig(**{
                **base.__dict__, "probe": "cpu", "max_jobs": args.cpu_slots, "reserve_mb": 0,
                "pack_size": args.pack_size_for("cpu"),
                "cpu_threads": max(1, (os.cpu_count() or 1) // args.cpu_slots),
            })
            launch = GpuActor.options(  # type: ignore[attr-defined]
                num_gpus=0, scheduling_strategy=here).remote
            self._launchers.append(partial(launch, cpu, 0))
        self._actors = [launch() for launch in self._launchers]
        names = ray.get([a.device_name.remote() for a in self._actors], timeout=ACTOR_START_S)
        log.info("worker %s running on %s, API %s", args.name, ", ".join(names), args.api)

    # ---- run -----------------------------------------------------------------------------------

    def _watch(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Waits for SIGTERM (or an actor's fatal error), resending spooled reports meanwhile."""
        pending = {actor.run_forever.remote(): slot for slot, actor in enumerate(self._actors)}
        restarts = [0] * len(self._actors)
        summaries: list[dict[str, Any]] = []
        failed: list[str] = []
        next_flush = 0.0
        stop_sent = False
        while pending:
            if self._stop.is_set() and not stop_sent:
                self._stop_actors(self.args.drain_timeout)
                stop_sent = True
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                slot = pending.pop(ref)
                try:
                    summary = ray.get(ref)
                except RayError as error:  # the actor's process died (OOM killer, segfault)
                    reason = str(error).strip().splitlines()[0]
                    if self._stop.is_set() or restarts[slot] >= MAX_ACTOR_RESTARTS:
                        failed.append(f"an actor died: {reason}")
                        self._stop.set()
                        continue
                    restarts[slot] += 1
                    log.warning("an actor died (%s); starting a new one", reason)
                    self._actors[slot] = self._launchers[slot]()
                    pending[self._actors[slot].run_forever.remote()] = slot
                    continue
                summaries.append(summary)
                if summary.get("error"):
                    failed.append(summary["error"])
                    self._stop.set()  # one device failing for good stops the worker
            if time.monotonic() >= next_flush:
                self._flush_spool(retry_for_s=0.5)
                next_flush = time.monotonic() + SPOOL_FLUSH_S
        return summaries, failed

    def _stop_actors(self, drain_timeout_s: float) -> None:
        log.info("draining: no new claims; running jobs get %.0fs to finish", drain_timeout_s)
        for actor in self._actors:
            with contextlib.suppress(Exception):
                actor.stop.remote(drain_timeout_s)

    def _flush_spool(self, retry_for_s: float) -> None:
        if not self.spool.pending():
            return
        client = ApiClient(self.args.api, self.args.token)
        try:
            self.spool.flush(client, retry_for_s=retry_for_s)
        finally:
            client.close()

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals == 1:
                log.info("got %s", signal.Signals(signum).name)
                self._stop.set()
            else:  # asked twice: do not wait for the jobs
                self._stop_actors(0.0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # ---- stop ----------------------------------------------------------------------------------

    def _shutdown_ray(self) -> None:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if self._ray_tmp:
            shutil.rmtree(self._ray_tmp, ignore_errors=True)

    def _write_stats(self, summaries: list[dict[str, Any]]) -> None:
        if not self.args.stats_file:
            return
        jobs = [job for summary in summaries for job in summary.get("jobs", [])]
        Path(self.args.stats_file).write_text(
            json.dumps({"devices": [s.get("device") for s in summaries], "jobs": jobs}, indent=1)
        )

