"""An adapter upload never holds the database's write lock while its bytes arrive or while its
zip is written (issue 20, finding 7): claims and heartbeats go on meanwhile, on SQLite and
Postgres."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.adapter_zip import ArchiveLimits, read_archive
from scheduler.artifacts import get_adapter, store_adapter
from scheduler.blob_store import BlobStore
from scheduler.db import Database
from scheduler.migrate import upgrade
from scheduler.queue import claim_job, complete_job, heartbeat
from scheduler.sweeps import create_sweep
from tests.helpers.server import Service, start_service
from tools.adapter_uploads import adapter_zip_of

TRAIN = {"kind": "train", "task": "rotten_tomatoes", "backbone": "minilm"}
SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
BOUND_S = 2.0
LIMITS = ArchiveLimits(max_bytes=2**22, max_members=64, max_json_depth=32,
                       max_json_values=200_000)


class HeldBlobStore(BlobStore):
    """A store whose write waits for ``release``: an upload caught mid-write."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writing, self.release = threading.Event(), threading.Event()

    def put(self, data: bytes) -> str:
        self.writing.set()
        assert self.release.wait(30), "the test never released the write"
        return super().put(data)


@pytest.fixture
def held(database_url: str, tmp_path: Path) -> Iterator[tuple[Database, HeldBlobStore]]:
    upgrade(database_url)
    database = Database(database_url, artifacts=tmp_path / "artifacts")
    store = HeldBlobStore(tmp_path / "artifacts")
    database.use_store(store)
    yield database, store
    database.dispose()


def test_a_claim_and_a_heartbeat_complete_while_an_adapter_is_being_written(
    held: tuple[Database, HeldBlobStore],
) -> None:
    database, store = held
    with database.session() as session:
        create_sweep(session, "train", TRAIN)
        create_sweep(session, "others", SYNTHETIC, grid={"seed": [0, 1]})
        train = claim_job(session, "uploader", None, 10**6, 60, 3)
        assert train is not None and train.job.kind == "train"
    upload = read_archive(adapter_zip_of(2**20), LIMITS)
    outcome: dict[str, Any] = {}

    def uploader() -> None:
        with database.session() as session:
            outcome["stored"] = store_adapter(session, train.job.id, train.lease_id, upload)

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        assert store.writing.wait(10)
        started = time.monotonic()
        with database.session() as session:
            other = claim_job(session, "claimer", None, 10**6, 60, 3)
        with database.session() as session:
            beat = heartbeat(session, train.job.id, train.lease_id, 60)
        took = time.monotonic() - started
    finally:
        store.release.set()
        thread.join(30)
    assert other is not None and other.job.kind == "synthetic"
    assert not beat.cancelled
    assert took < BOUND_S, f"a claim and a heartbeat took {took:.2f} s behind a blob write"
    assert outcome["stored"].sha256 == upload.sha256
    with database.session() as session:
        complete_job(session, train.job.id, train.lease_id, {"accuracy": 0.5})
    with database.session(write=False) as session:
        assert get_adapter(session, train.job.id)[1] == upload.archive
    assert len(list(store.root.glob("*.zip"))) == 1


def test_a_replaced_attempt_leaves_one_file_and_a_refused_upload_none(
    database_url: str, tmp_path: Path
) -> None:
    upgrade(database_url)
    database = Database(database_url, artifacts=tmp_path / "artifacts")
    try:
        with database.session() as session:
            create_sweep(session, "train", TRAIN)
            train = claim_job(session, "uploader", None, 10**6, 60, 3)
            assert train is not None
        first, second = (read_archive(adapter_zip_of(4096), LIMITS) for _ in range(2))
        for upload in (first, second):
            with database.session() as session:
                store_adapter(session, train.job.id, train.lease_id, upload)
        with database.session() as session:
            complete_job(session, train.job.id, train.lease_id, {"accuracy": 0.5})
        with pytest.raises(Exception, match="never replaced"), database.session() as session:
            store_adapter(session, train.job.id, train.lease_id, first)
        files = list(database.artifacts.root.glob("*"))
        assert len(files) == 1 and files[0].read_bytes() == second.archive
    finally:
        database.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp(f"uploads-{request.param}")
    url = (None if request.param == "sqlite"
           else request.getfixturevalue("postgres").fresh_database())
    running = start_service(folder, url, 30.0)
    try:
        yield running
    finally:
        running.stop()


def test_a_claim_completes_while_a_slow_upload_body_is_still_arriving(service: Service) -> None:
    with service.client("submitter") as client:
        client.post("/api/v1/sweeps", json={"name": "slow", "base": TRAIN}).raise_for_status()
        client.post("/api/v1/sweeps", json={"name": "others", "base": SYNTHETIC}
                    ).raise_for_status()
    with service.client("worker") as worker:
        train = worker.post("/api/v1/jobs/claim",
                            json={"worker_id": "slow", "free_memory_mb": 10**6}).json()
        assert train["job"]["kind"] == "train", train
        body = adapter_zip_of(2**20)
        path = f"/api/v1/jobs/{train['job']['id']}/adapter?lease_id={train['lease_id']}"
        head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{service.tokens['worker']}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        port = int(service.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            half = len(body) // 2
            sock.sendall(head + b"%x\r\n%s\r\n" % (half, body[:half]))
            time.sleep(0.2)  # the server is now reading a body that has not all arrived
            started = time.monotonic()
            other = worker.post("/api/v1/jobs/claim",
                                json={"worker_id": "other", "free_memory_mb": 10**6})
            beat = worker.post(f"/api/v1/jobs/{train['job']['id']}/heartbeat",
                               json={"lease_id": train["lease_id"]})
            took = time.monotonic() - started
            rest = body[half:]
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
            answer = sock.recv(65536)
        assert other.status_code == 200 and other.json()["job"]["kind"] == "synthetic"
        assert beat.status_code == 200, beat.text
        assert took < BOUND_S, f"a claim and a heartbeat took {took:.2f} s behind an upload"
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert len(list(service.artifacts.glob("*.zip"))) == 1
