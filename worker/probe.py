"""What a worker knows about its devices: how many, and how much memory each has free right now.

``GpuProbe`` is the interface the actors read; ``NvmlProbe`` asks the NVIDIA driver (pynvml from
the ``nvidia-ml-py`` package), ``FakeProbe`` answers for declared GPUs on machines without one and
``CpuProbe`` for CPU slots. Fake and CPU devices do not see what a job allocates, so the actor keeps
a job's reservation for the job's whole life there (``measures_allocations`` is False).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Protocol

MIB = 1024 * 1024


class ProbeError(RuntimeError):
    """The driver cannot answer (no driver, lost GPU, bad index): the message says which."""


@dataclass(frozen=True)
class Device:
    """One place jobs run; ``name`` is what the API records: ``cuda:1``, ``fake:0``, ``cpu``."""

    index: int
    name: str
    total_memory_mb: int


class GpuProbe(Protocol):
    measures_allocations: bool

    def devices(self) -> list[Device]: ...

    def free_memory_mb(self, index: int) -> int: ...


class NvmlProbe:
    """Real GPUs through NVML. Indices are the driver's (physical) ones, as in ``nvidia-smi``."""

    measures_allocations = True

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise ProbeError(
                f"cannot talk to the NVIDIA driver through NVML ({error}); on a host without a GPU "
                "use --fake-gpus 2x16000 or --cpu-slots N"
            ) from None

    def devices(self) -> list[Device]:
        try:
            count = self._nvml.nvmlDeviceGetCount()
            return [
                Device(i, f"cuda:{i}", self._memory(i).total // MIB) for i in range(count)
            ]
        except self._nvml.NVMLError as error:
            raise ProbeError(f"NVML cannot list the GPUs: {error}") from None

    def free_memory_mb(self, index: int) -> int:
        try:
            return int(self._memory(index).free // MIB)
        except self._nvml.NVMLError as error:
            raise ProbeError(f"NVML cannot read the memory of GPU {index}: {error}") from None

    def _memory(self, index: int):
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return self._nvml.nvmlDeviceGetMemoryInfo(handle)


class FakeProbe:
    """Declared GPUs: always fully free; the actor's reservations stand in for allocations."""

    measures_allocations = False

    def __init__(self, memory_mb: list[int]) -> None:
        self._memory_mb = list(memory_mb)

    @classmethod
    def parse(cls, text: str) -> FakeProbe:
        """``2x16000`` (two GPUs of 16000 MiB) or ``16000,8000`` (one size per GPU)."""
        text = text.strip().lower()
        match = re.fullmatch(r"(\d+)x(\d+)", text)
        if match:
            return cls([int(match.group(2))] * int(match.group(1)))
        if re.fullmatch(r"\d+(,\d+)*", text):
            return cls([int(part) for part in text.split(",")])
        raise ValueError(f"--fake-gpus must look like 2x16000 or 16000,8000; got {text!r}")

    def devices(self) -> list[Device]:
        return [Device(i, f"fake:{i}", mb) for i, mb in enumerate(self._memory_mb)]

    def free_memory_mb(self, index: int) -> int:
        return self._memory_mb[index]


class CpuProbe:
    """The host's RAM as one device that runs up to ``--cpu-slots`` jobs."""

    measures_allocations = False

    def devices(self) -> list[Device]:
        return [Device(0, "cpu", _meminfo_mb("MemTotal"))]

    def free_memory_mb(self, index: int) -> int:
        # Jobs running here already use RAM that MemAvailable no longer counts, and the actor also
        # subtracts their reservations: conservative, which is what a host shared with users wants.
        return _meminfo_mb("MemAvailable")


def _meminfo_mb(field: str) -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    # Not Linux: total physical memory, the best a portable call can say.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def device_memory_mb(probe: GpuProbe, device: Device) -> int:
    """What a claim declares as the device's whole memory, the most a job's reported peak can
    be: the device's own, but the host's RAM for a fake GPU (its jobs run on the CPU, so their
    peak is the process's resident size)."""
    return _meminfo_mb("MemTotal") if isinstance(probe, FakeProbe) else device.total_memory_mb
