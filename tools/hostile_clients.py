"""Hostile clients, shared by the body tests (tests/service/test_service_bodies.py) and
bench/body_attacks.py: a raw socket that streams a body the way an attacker would (it keeps
sending until the server answers or hangs up), a /healthz prober that records how long each
answer took, and a process's memory from /proc.

Everything here talks to 127.0.0.1 only and stops at a byte count and a deadline.
"""

from __future__ import annotations

import io
import json
import select
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HealthProbe", "RawAnswer", "json_integers", "memory_mib", "send_raw", "zip_of_empty_files",
]


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: its resident memory now, and its peak so far."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def json_integers(size_bytes: int) -> bytes:
    """A JSON array of small integers filling ``size_bytes`` (16 MiB: about 8M integers), the
    cheapest body to send and the dearest to parse and walk."""
    count = max(1, (size_bytes - 2) // 2)
    return b"[" + b"1," * (count - 1) + b"1]"


def zip_of_empty_files(count: int) -> bytes:
    """A zip of ``count`` empty files: small to send, and a directory as large as you like."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"m{index}", b"")
    return buffer.getvalue()


@dataclass
class RawAnswer:
    status: int | None  #: the status line's code; None when the server answered nothing
    sent_bytes: int  #: body bytes the socket took before the answer or the hang-up
    seconds: float  #: from the first byte sent to the answer (or the end)
    head: bytes = b""  #: status line and headers, as received


def _chunks(body: bytes | int, chunk: int) -> Iterator[bytes | memoryview]:
    if isinstance(body, bytes):
        view = memoryview(body)  # slices without copies: the sender stays cheap
        for start in range(0, len(body), chunk):
            yield view[start:start + chunk]
        return
    zeros = b"\0" * chunk
    for start in range(0, body, chunk):
        yield zeros[: min(chunk, body - start)]


def send_raw(
    port: int,
    method: str,
    path: str,
    body: bytes | int,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = True,
    chunk_bytes: int = 1 << 20,
    timeout_s: float = 30.0,
    answer_wait_s: float = 0.0,
) -> RawAnswer:
    """Sends ``body`` (bytes, or a count of zero bytes) to 127.0.0.1:``port``, chunked by
    default, reading as it goes: it stops at the server's answer or hang-up, or at ``timeout_s``.
    A server that answers early and closes the connection has ``sent_bytes`` far below the
    body's size. ``answer_wait_s``: wait that long for an answer after the headers, before any
    of the body (a server that needs no body to refuse answers within it)."""
    size = len(body) if isinstance(body, bytes) else body
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             *(f"{name}: {value}" for name, value in (headers or {}).items()),
             "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"]
    started = time.monotonic()
    deadline = started + timeout_s
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = _readable(sock, answer_wait_s) if answer_wait_s else b""
        try:
            for data in _chunks(body, chunk_bytes):
                received += _readable(sock, 0)
                if received or time.monotonic() > deadline:
                    break
                frame = b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock.sendall(frame)
                sent += len(data)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except OSError:  # reset or broken pipe: the server hung up on the body
            pass
        while b"\r\n\r\n" not in received and time.monotonic() < deadline:
            more = _readable(sock, min(1.0, max(0.0, deadline - time.monotonic())))
            if not more and _closed(sock):
                break
            received += more
    head = received.split(b"\r\n\r\n", 1)[0]
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    return RawAnswer(status, sent, time.monotonic() - started, head)


def _readable(sock: socket.socket, wait_s: float) -> bytes:
    try:
        ready, _, _ = select.select([sock], [], [], wait_s)
        return sock.recv(65536) if ready else b""
    except OSError:
        return b""


def _closed(sock: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
        return bool(ready) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


#: The prober's own process: in the process that sends the attack it would measure its own
#: threads' contention for the GIL, not the server.
_PROBE = """
import json, select, sys, time
import httpx
url, every_s, timeout_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
latencies, failures = [], 0
with httpx.Client(base_url=url, timeout=timeout_s) as client:
    while not select.select([sys.stdin], [], [], 0)[0]:  # until the parent closes stdin
        started = time.monotonic()
        try:
            ok = client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.monotonic() - started)
        failures += not ok
        if len(latencies) == 1:
            print("ready", flush=True)
        time.sleep(every_s)
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


@dataclass
class HealthProbe:
    """Polls ``GET /healthz`` every ``every_s`` from a process of its own while in a ``with``
    block; ``latencies`` holds how long each answer took (a timeout counts as its full wait)."""

    url: str
    every_s: float = 0.05
    timeout_s: float = 30.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def __enter__(self) -> HealthProbe:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, self.url, str(self.every_s), str(self.timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._process.stdout is not None
        self._process.stdout.readline()  # its first answer comes before the attack does
        return self

    def __exit__(self, *_: object) -> None:
        output, _errors = self._process.communicate("", timeout=self.timeout_s + 30)
        found = json.loads(output.splitlines()[-1])
        self.latencies, self.failures = found["latencies"], found["failures"]

    @property
    def worst_s(self) -> float:
        return max(self.latencies, default=0.0)

    def summary(self) -> str:
        if not self.latencies:
            return "no /healthz answer"
        median = statistics.median(self.latencies)
        return (f"/healthz: {len(self.latencies)} answers, median {median * 1000:.1f} ms, "
                f"worst {self.worst_s * 1000:.0f} ms, {self.failures} failed")
