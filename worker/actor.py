"""One Ray actor per device: claims jobs that fit the device's free memory and runs them.

Ray pins each GPU actor through ``num_gpus=1`` (it sets CUDA_VISIBLE_DEVICES, which the job's
child inherits). The actor declares ``num_cpus=0``: a GPU actor that also took a CPU would starve
a small host. ``run_forever`` is the loop; ``stop`` (from another of the actor's threads) ends it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from protocol.client import ApiClient, ApiRejected, ApiUnavailable, PackLeases, quiet_http_logs
from protocol.vocabulary import Outcome
from worker.pack import RunningPack
from worker.probe import (
    CpuProbe,
    Device,
    FakeProbe,
    GpuProbe,
    NvmlProbe,
    ProbeError,
    device_memory_mb,
)
from worker.spool import Spool

log = logging.getLogger(__name__)

CLAIM_BACKOFF_S = 2.0  # after the API failed to answer a claim


@dataclass(frozen=True)
class ActorConfig:
    """What every actor of one worker shares; built by ``worker.main`` from the command line."""

    api_url: str
    token: str
    worker_id: str
    probe: str  # "nvml", "fake:<spec>" or "cpu"
    spool_dir: str
    log_dir: str
    driver_pid: int  # the actor ends its jobs and itself if this process dies (kill -9)
    max_jobs: int = 8  # processes at once: jobs alone or packs
    pack_size: int = 1  # the most jobs one process trains together
    reserve_mb: int = 0
    poll_interval_s: float = 2.0
    cpu_threads: int | None = None


def make_probe(kind: str) -> GpuProbe:
    if kind == "nvml":
        return NvmlProbe()
    if kind == "cpu":
        return CpuProbe()
    if kind.startswith("fake:"):
        return FakeProbe.parse(kind.removeprefix("fake:"))
    raise ValueError(f"unknown probe {kind!r}")


class DeviceWorker:
    """The loop of one device. Plain class (testable without Ray); ``GpuActor`` wraps it."""

    def __init__(self, config: ActorConfig, device_index: int) -> None:
        self.config = config
        self.probe = make_probe(config.probe)
        self.device: Device = self.probe.devices()[device_index]
        self.client = ApiClient(config.api_url, config.token)
        self.spool = Spool(config.spool_dir)
        self.packs: list[RunningPack] = []  # one per process: a pack of one job or more
        self.history: list[dict[str, Any]] = []  # per-job timings, for benchmarks
        self._stopping = threading.Event()
        self._drain_deadline: float | None = None
        self._wake = threading.Event()  # a job ended: its memory may fit the next one
        self._child_device = "cuda" if isinstance(self.probe, NvmlProbe) else "cpu"

    def run_forever(self) -> dict[str, Any]:
        """Claims and runs jobs until ``stop``; then drains. Returns a summary of what ran."""
        error = None
        try:
            while not self._stopping.is_set():
                self._check_driver_alive()
                self._reap()
                if not self._claim_while_it_fits():
                    self._wake.wait(min(self.config.poll_interval_s, 1.0))
                    self._wake.clear()
        except (ProbeError, ApiRejected) as fatal:
            error = f"{self.device.name}: {fatal}"
            log.error("%s", error)
        self._drain()
        self.client.close()
        return {"device": self.device.name, "error": error, "jobs": self.history}

    def stop(self, drain_timeout_s: float) -> None:
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stopping.set()
        self._wake.set()

    def outstanding_mb(self) -> int:
        """Memory this actor's jobs reserved that the probe does not yet see as used."""
        return sum(
            pack.reserved_mb
            for pack in self.packs
            if not (pack.allocated and self.probe.measures_allocations)
        )

    def _claim_while_it_fits(self) -> bool:
        """Claims and starts jobs (or packs) until none fits. True if it started any."""
        started = False
        while len(self.packs) < self.config.max_jobs and not self._stopping.is_set():
            free_mb = self.probe.free_memory_mb(self.device.index)
            offer_mb = free_mb - self.config.reserve_mb - self.outstanding_mb()
            if offer_mb <= 0:
                break
            claim_sent_at = time.monotonic()
            try:
                claimed = self._claim(offer_mb)
            except ApiUnavailable as error:
                log.warning("claim failed, retrying in %.0fs: %s", CLAIM_BACKOFF_S, error)
                self._stopping.wait(CLAIM_BACKOFF_S)
                break
            if claimed is None:
                break
            pack = RunningPack(
                claimed.leases, _reservation_mb(claimed, offer_mb), self.client, self.spool,
                Path(self.config.log_dir), self._wake, claim_sent_at=claim_sent_at,
                pack_id=claimed.pack_id,
            )
            try:
                pack.start(self._child_device, threads=self.config.cpu_threads)
            except OSError as error:  # no process could start: say so rather than hold the jobs
                log.error("job %s: cannot start its process: %s", pack.lease.job_id, error)
                for lease in claimed.leases:
                    with contextlib.suppress(Exception):
                        self.client.fail(lease.job_id, lease.lease_id, f"cannot start: {error}")
                break
            self.packs.append(pack)
            started = True
        return started

    def _claim(self, offer_mb: int) -> PackLeases | None:
        """A pack when packs are on (``pack_size`` > 1), else one job (as a pack of one)."""
        worker_id, device = self.config.worker_id, self.device.name
        memory_mb = device_memory_mb(self.probe, self.device)  # the API refuses peaks above it
        if self.config.pack_size > 1:
            return self.client.claim_pack(worker_id, device, offer_mb, self.config.pack_size,
                                          device_memory_mb=memory_mb)
        lease = self.client.claim(worker_id, device, offer_mb, device_memory_mb=memory_mb)
        return PackLeases(None, [lease], lease.job.memory_estimate_mb) if lease else None

    def _reap(self) -> None:
        for pack in [pack for pack in self.packs if pack.done]:
            self.packs.remove(pack)
            self.history.extend(pack.timings())

    def _drain(self) -> None:
        """Lets running jobs finish until the drain deadline, then gives their leases back."""
        deadline = self._drain_deadline or time.monotonic()
        while self.packs and time.monotonic() < deadline:
            self._wake.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
            self._reap()
        for pack in self.packs:
            pack.stop(Outcome.released)
        for pack in self.packs:
            pack.join(timeout=10.0)
        self._reap()

    def _check_driver_alive(self) -> None:
        """A worker killed with -9 cannot stop its actors: they notice and end with it."""
        try:
            os.kill(self.config.driver_pid, 0)
        except ProcessLookupError:
            log.error("the worker process %d is gone; ending jobs", self.config.driver_pid)
            for pack in self.packs:
                with contextlib.suppress(Exception):
                    pack.stop(Outcome.lost)
            os._exit(1)
        except PermissionError:
            pass


def pin_cuda_device(nvml_index: int) -> None:
    """Makes the GPU that NVML numbers ``nvml_index`` the only one this actor's jobs see.

    Ray counts one GPU per actor, but on a cluster this worker joined it may hand out another
    physical GPU than the one ``--gpus`` named; the worker's own choice wins, in NVML's (PCI
    bus) order, which CUDA follows only when told to.
    """
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = str(nvml_index)


def _reservation_mb(claimed: PackLeases, offer_mb: int) -> int:
    """The memory the API expects the job (or pack) to hold; else all that was offered."""
    if claimed.memory_estimate_mb > 0:
        return claimed.memory_estimate_mb
    lease = claimed.leases[0]
    spec_mb = lease.spec.get("memory_mb")
    if lease.spec.get("kind") == "synthetic":
        return int(spec_mb if spec_mb is not None else 100)
    return offer_mb


# Ray's stubs type remote functions, not actor classes (nor their .options).
@ray.remote(num_gpus=1, num_cpus=0, max_concurrency=4)  # type: ignore[call-overload]
class GpuActor:
    """One GPU (or, with ``.options(num_gpus=0)``, the CPU slots), pinned by Ray."""

    def __init__(self, config: ActorConfig, device_index: int) -> None:
        """``device_index``: the probe's index of the device (for NVML, the GPU ``--gpus``
        named, which the actor pins even where Ray would hand out another)."""
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        quiet_http_logs()
        if config.probe == "nvml":
            pin_cuda_device(device_index)
        self._worker = DeviceWorker(config, device_index)

    def device_name(self) -> str:
        return self._worker.device.name

    def run_forever(self) -> dict[str, Any]:
        return self._worker.run_forever()

    def stop(self, drain_timeout_s: float) -> None:
        self._worker.stop(drain_timeout_s)
