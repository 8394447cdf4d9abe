"""Request bodies as an attacker sends them, against the real server (SQLite, a fresh server per
scenario): server memory and /healthz latency while they arrive. The figures of
docs/security.md ("What a client cannot do").

1. 512 MiB of zeros, chunked, ``PUT /api/v1/jobs/1/adapter`` with ``Content-Type:
   application/json`` and no token: the answer and the server's peak memory (VmHWM).
2. Two anonymous senders posting 16 MiB JSON bodies (8M small integers) to
   ``POST /api/v1/sweeps`` for --seconds: /healthz latency meanwhile.
3. A submitter posting, one after another for --seconds, (a) a 16 MiB sweep whose tag is 8M
   integers (refused: more values than TENSLORA_MAX_JSON_VALUES), then (b) the dearest sweep
   the limits let through: a tag of 49,000 empty lists (counted as 98,000 values, a bracket
   and a comma each, under the default 100,000). /healthz latency meanwhile.
4. A worker token's upload with a bogus lease for a job that does not exist, a zip of
   --members members: the answer, its time and the server's memory.

    python bench/body_attacks.py
    python bench/body_attacks.py --seconds 10 --members 700000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.server import RunningServer, mint_tokens, sqlite_url, start_server
from tools.hostile_clients import (
    HealthProbe,
    RawAnswer,
    json_integers,
    memory_mib,
    send_raw,
    zip_of_empty_files,
)

MIB = 1 << 20


def _memory(pid: int, label: str, before: float) -> None:
    rss, hwm = memory_mib(pid)
    print(f"  server memory {label}: RSS {rss:.0f} MiB, peak (VmHWM) {hwm:.0f} MiB "
          f"({hwm - before:+.0f} MiB over the RSS before)")


def _answered(answer: RawAnswer) -> None:
    print(f"  answer {answer.status} after {answer.seconds:.2f} s, with "
          f"{answer.sent_bytes / MIB:.1f} MiB of the body sent by then")


def unauthenticated_upload(port: int, url: str, pid: int, size_mib: int) -> None:
    print(f"1. {size_mib} MiB chunked PUT /api/v1/jobs/1/adapter, JSON content type, no token")
    rss_before, _ = memory_mib(pid)
    with HealthProbe(url) as probe:
        answer = send_raw(port, "PUT", "/api/v1/jobs/1/adapter", size_mib * MIB,
                          {"Content-Type": "application/json"}, timeout_s=120)
    _answered(answer)
    _memory(pid, "after", rss_before)
    print(f"  {probe.summary()}")


def senders(port: int, url: str, seconds: float, headers: dict[str, str], path: str,
            body: bytes, count: int) -> None:
    sent: list[tuple[int | None, float]] = []
    deadline = time.monotonic() + seconds

    def sender() -> None:
        while time.monotonic() < deadline:
            answer = send_raw(port, "POST", path, body, headers, chunked=False, timeout_s=60)
            sent.append((answer.status, answer.seconds))

    threads = [threading.Thread(target=sender) for _ in range(count)]
    with HealthProbe(url) as probe:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
    statuses = sorted({str(status) for status, _ in sent})
    slowest = max((s for _, s in sent), default=0.0)
    print(f"  {len(sent)} bodies answered ({', '.join(statuses)}), slowest answer "
          f"{slowest:.2f} s")
    print(f"  {probe.summary()}")


def bogus_lease_upload(port: int, pid: int, token: str, members: int) -> None:
    body = zip_of_empty_files(members)
    print(f"4. worker token, bogus lease, missing job: a {len(body) / MIB:.1f} MiB zip of "
          f"{members:,} members")
    rss_before, _ = memory_mib(pid)
    answer = send_raw(port, "PUT", f"/api/v1/jobs/{2**31 - 1}/adapter?lease_id=bogus", body,
                      {"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
                      chunked=False, timeout_s=120)
    _answered(answer)
    _memory(pid, "after", rss_before)


@contextmanager
def fresh_server() -> Iterator[tuple[RunningServer, dict[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        url = sqlite_url(Path(folder))
        tokens = mint_tokens(url, ("submitter", "worker"))
        server = start_server(url, Path(folder) / "server.log")
        try:
            yield server, tokens
        finally:
            server.stop()


def _sweep(tag: bytes) -> bytes:
    return b'{"name": "big", "base": {"kind": "synthetic", "tag": ' + tag + b"}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mib", type=int, default=512)
    parser.add_argument("--body-mib", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=200_000)
    args = parser.parse_args()
    with fresh_server() as (server, _):
        unauthenticated_upload(server.port, server.url, server.process.pid, args.upload_mib)
    body = json_integers(args.body_mib * MIB)
    with fresh_server() as (server, _):
        print(f"2. two anonymous senders, {len(body) / MIB:.0f} MiB JSON bodies "
              f"({len(body) // 2:,} integers), {args.seconds:.0f} s")
        senders(server.port, server.url, args.seconds, {"Content-Type": "application/json"},
                "/api/v1/sweeps", body, 2)
    dearest = b"[" + b"[]," * 48_999 + b"[]]"
    for label, sweep in ((f"a {args.body_mib} MiB sweep, its tag 8M integers",
                          _sweep(json_integers(args.body_mib * MIB - 100))),
                         ("a sweep whose tag is 49,000 empty lists", _sweep(dearest))):
        with fresh_server() as (server, tokens):
            print(f"3. a submitter's {label} ({len(sweep) / MIB:.1f} MiB), one after another, "
                  f"{args.seconds:.0f} s")
            senders(server.port, server.url, args.seconds,
                    {"Content-Type": "application/json",
                     "Authorization": f"Bearer {tokens['submitter']}"},
                    "/api/v1/sweeps", sweep, 1)
    with fresh_server() as (server, tokens):
        bogus_lease_upload(server.port, server.process.pid, tokens["worker"], args.members)


if __name__ == "__main__":
    main()
