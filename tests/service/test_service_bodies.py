"""Request bodies as an attacker sends them, against the real server process: no body is read
before its token is known to be good for the route, none past its route's limit, and the server
keeps answering while they arrive (its memory and /healthz measured from outside)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.server import Service, start_service
from tools.hostile_clients import HealthProbe, RawAnswer, json_integers, memory_mib, send_raw

MIB = 1 << 20
ADAPTER_MB = 8  # TENSLORA_MAX_ADAPTER_MB of this server: the largest body any route reads
REPORT_KIB = 256
#: What the server may grow by beyond the largest body it reads (buffers, a thread's stack).
SLACK_MIB = 32


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start_service(
        tmp_path_factory.mktemp("bodies"), TENSLORA_MAX_ADAPTER_MB=str(ADAPTER_MB),
        TENSLORA_MAX_REPORT_KIB=str(REPORT_KIB), TENSLORA_MAX_JSON_VALUES="50000",
    )
    try:
        yield running
    finally:
        running.stop()


def _bearer(service: Service, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens[role]}"}


def test_an_anonymous_512_mib_upload_is_refused_before_its_body_and_memory_stays_flat(
    service: Service,
) -> None:
    """Finding 1: the JSON check buffered any PUT without a cap before the token was looked at
    (512 MiB took the server from 281 MB to 1.27 GB)."""
    pid = service.server.process.pid
    rss_before, peak_before = memory_mib(pid)
    answer = send_raw(service.server.port, "PUT", "/api/v1/jobs/1/adapter", 512 * MIB,
                      {"Content-Type": "application/json"}, timeout_s=60)
    _, peak_after = memory_mib(pid)
    assert answer.status == 401, answer.head
    assert answer.sent_bytes < 64 * MIB, "the server kept reading a body it had refused"
    # The peak during the attack: no higher than before it, or than the largest body a route
    # may read plus a little.
    assert peak_after <= max(peak_before, rss_before + ADAPTER_MB + SLACK_MIB), (
        rss_before, peak_before, peak_after)


def test_healthz_answers_within_half_a_second_while_anonymous_16_mib_bodies_arrive(
    service: Service,
) -> None:
    """Finding 2: 8M small integers were parsed and walked on the event loop before the token
    (401 after 8.9 s, /healthz blocked 8.7 s)."""
    body = json_integers(16 * MIB)
    answers: list[RawAnswer] = []
    deadline = time.monotonic() + 3

    def sender(path: str) -> None:
        for _ in range(1000):  # bounded in count and time
            if time.monotonic() > deadline:
                return
            answers.append(send_raw(service.server.port, "POST", path, body,
                                    {"Content-Type": "application/json"}, chunked=False))

    threads = [threading.Thread(target=sender, args=(path,))
               for path in ("/api/v1/sweeps", "/api/v1/jobs/claim")]
    with HealthProbe(service.url) as probe:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(probe.latencies) >= 5 and probe.failures == 0, probe.summary()
    assert probe.worst_s < 0.5, probe.summary()
    assert answers and {answer.status for answer in answers} == {401}
    assert max(answer.sent_bytes for answer in answers) < len(body) // 2


def test_an_upload_with_a_bogus_lease_for_a_missing_job_is_refused_before_its_body(
    service: Service,
) -> None:
    """Finding 6: the zip was unpacked before the lease and the job were checked (a 58.5 MiB
    zip of 700,000 members: 4.8 s and +450 MB per request). Now the answer comes with no body
    sent at all."""
    headers = {**_bearer(service, "worker"), "Content-Type": "application/zip"}
    answer = send_raw(service.server.port, "PUT", f"/api/v1/jobs/{2**31 - 1}/adapter"
                      "?lease_id=bogus", 4 * MIB, headers, chunked=False, answer_wait_s=5)
    assert answer.status == 404, answer.head
    assert answer.sent_bytes == 0 and answer.seconds < 5


def test_a_body_is_refused_at_its_routes_limit_and_only_after_the_token(
    service: Service,
) -> None:
    heartbeat = b'{"lease_id": "' + b"x" * (65 * 1024) + b'"}'
    metrics = b'{"lease_id": "x", "points": [' + b"0," * (REPORT_KIB * 1024 // 2) + b"0]}"
    port = service.server.port
    for path, body, setting in (("/api/v1/jobs/1/heartbeat", heartbeat,
                                 "TENSLORA_MAX_SMALL_BODY_KIB"),
                                ("/api/v1/jobs/1/metrics", metrics, "TENSLORA_MAX_REPORT_KIB")):
        for chunked in (False, True):
            with service.client("worker") as worker:
                refused = worker.post(path, content=body if not chunked else iter([body]),
                                      headers={"Content-Type": "application/json"})
            assert refused.status_code == 413, refused.text
            assert setting in refused.json()["detail"]
        anonymous = send_raw(port, "POST", path, body, {"Content-Type": "application/json"})
        assert anonymous.status == 401  # the token first: nobody learns the limits unasked


def test_no_body_is_parsed_before_the_token_is_good_for_the_route(service: Service) -> None:
    poison = b'{"name": "x", "base": {"tag": "\\udc00"}}'
    port = service.server.port
    json_type = {"Content-Type": "application/json"}
    assert send_raw(port, "POST", "/api/v1/sweeps", poison, json_type).status == 401
    worker = send_raw(port, "POST", "/api/v1/sweeps", poison,
                      {**json_type, **_bearer(service, "worker")}, answer_wait_s=5)
    assert worker.status == 403 and worker.sent_bytes == 0  # the role, before the body
    with service.client("submitter") as submitter:
        checked = submitter.post("/api/v1/sweeps", content=poison, headers=json_type)
    assert checked.status_code == 422 and checked.json()["detail"][0]["loc"] == [
        "body", "base", "tag"]


def test_a_body_of_more_json_values_than_the_setting_is_refused_before_parsing(
    service: Service,
) -> None:
    # Counted before it is parsed: what the values are does not matter yet.
    body = b'{"lease_id": "x", "points": [' + b"0," * 60_000 + b"0]}"
    assert len(body) < REPORT_KIB * 1024
    with service.client("worker") as worker:
        refused = worker.post("/api/v1/jobs/1/metrics", content=body,
                              headers={"Content-Type": "application/json"})
    assert refused.status_code == 413, refused.text
    assert "TENSLORA_MAX_JSON_VALUES" in refused.json()["detail"]


def test_the_server_log_holds_no_error_after_the_attacks(service: Service) -> None:
    log = Path(service.server.log_path).read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
