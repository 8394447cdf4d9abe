"""Request bodies as an attacker sends them, against the real server (SQLite): server memory and
/healthz latency while they arrive. The figures of docs/security.md ("What a client cannot do").

1. 512 MiB of zeros, chunked, ``PUT /api/v1/jobs/1/adapter`` with ``Content-Type:
   application/json`` and no token: the server's peak memory (VmHWM) and the answer.
2. Two anonymous senders posting 16 MiB JSON bodies (8M small integers) for --seconds:
   /healthz latency meanwhile.
3. The same bodies from a submitter (a valid sweep whose tag is 8M integers), one after another:
   /healthz latency while an authenticated 16 MiB body is parsed and checked.
4. A worker token's upload with a bogus lease for a job that does not exist, a zip of
   --members members: the answer, its time and the server's memory.

    python bench/body_attacks.py
    python bench/body_attacks.py --seconds 10 --members 700000
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.raw_http import HealthProbe, json_integers, memory_mib, send_raw
from tests.helpers.server import mint_tokens, sqlite_url, start_server

MIB = 1 << 20


def _memory(pid: int, label: str, before: float) -> None:
    rss, hwm = memory_mib(pid)
    print(f"  server memory {label}: RSS {rss:.0f} MiB, peak (VmHWM) {hwm:.0f} MiB "
          f"({hwm - before:+.0f} MiB over the RSS before)")


def unauthenticated_upload(port: int, url: str, pid: int, size_mib: int) -> None:
    print(f"1. {size_mib} MiB chunked PUT /api/v1/jobs/1/adapter, JSON content type, no token")
    rss_before, _ = memory_mib(pid)
    with HealthProbe(url) as probe:
        answer = send_raw(port, "PUT", "/api/v1/jobs/1/adapter", size_mib * MIB,
                          {"Content-Type": "application/json"}, timeout_s=120)
    print(f"  answer {answer.status} after {answer.seconds:.2f} s; the server took "
          f"{answer.sent_bytes / MIB:.1f} MiB of the body")
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


def member_bomb(members: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(members):
            archive.writestr(f"{index}", b"")
    return buffer.getvalue()


def bogus_lease_upload(port: int, pid: int, token: str, members: int) -> None:
    body = member_bomb(members)
    print(f"4. worker token, bogus lease, missing job: a {len(body) / MIB:.1f} MiB zip of "
          f"{members:,} members")
    rss_before, _ = memory_mib(pid)
    answer = send_raw(port, "PUT", f"/api/v1/jobs/{2**31 - 1}/adapter?lease_id=bogus", body,
                      {"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
                      chunked=False, timeout_s=120)
    print(f"  answer {answer.status} after {answer.seconds:.2f} s; the server took "
          f"{answer.sent_bytes / MIB:.1f} MiB of the body")
    _memory(pid, "after", rss_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mib", type=int, default=512)
    parser.add_argument("--body-mib", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = sqlite_url(Path(folder))
        tokens = mint_tokens(url, ("submitter", "worker"))
        server = start_server(url, Path(folder) / "server.log")
        try:
            port, pid = server.port, server.process.pid
            unauthenticated_upload(port, server.url, pid, args.upload_mib)
            body = json_integers(args.body_mib * MIB)
            print(f"2. two anonymous senders, {len(body) / MIB:.0f} MiB JSON bodies "
                  f"({len(body) // 2:,} integers), {args.seconds:.0f} s")
            senders(port, server.url, args.seconds, {"Content-Type": "application/json"},
                    "/api/v1/sweeps", body, 2)
            tag = json_integers(args.body_mib * MIB - 100)
            sweep = b'{"name": "big", "base": {"kind": "synthetic", "tag": ' + tag + b"}}"
            print(f"3. a submitter's {len(sweep) / MIB:.0f} MiB sweep (its tag 8M integers), "
                  f"{args.seconds:.0f} s")
            senders(port, server.url, args.seconds,
                    {"Content-Type": "application/json",
                     "Authorization": f"Bearer {tokens['submitter']}"},
                    "/api/v1/sweeps", sweep, 1)
            bogus_lease_upload(port, pid, tokens["worker"], args.members)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
