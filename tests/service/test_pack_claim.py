"""Pack keys and the pack claim, on each backend, without HTTP in between."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from scheduler import sweeps
from scheduler.db import Database
from scheduler.memory import backbone_memory_mb, pack_memory_mb, share_key
from scheduler.models import Job, ObservedMemory
from scheduler.packs import claim_pack
from scheduler.queue import claim_job, complete_job, reap_expired
from tenslora.core.job_spec import TrainSpec, parse_spec
from tenslora.core.pack_key import pack_key, pack_mismatch

BASE: dict[str, Any] = {
    "kind": "train",
    "task": "synthetic_text",
    "backbone": "minilm",
    "train": {"max_steps": 5, "batch_size": 8, "max_length": 32},
}
MIXED = [
    {"adapter": {"method": "lora", "ranks": 4}},
    {"adapter": {"method": "qkv", "ranks": [4, 4, 3]}, "optim": {"lr": 1e-3}},
    {"adapter": {"method": "att_qkv_depth", "factorization": "cp", "ranks": 6}},
    {"adapter": {"method": "depth", "ranks": [4, 4, 4]}, "seed": 3, "tag": "other"},
]


def _train(**changes: Any) -> TrainSpec:
    document: dict[str, Any] = {**BASE, "train": {**BASE["train"], **changes}}
    spec = parse_spec(document)
    assert isinstance(spec, TrainSpec)
    return spec


def test_pack_key_ignores_what_may_differ_inside_a_pack() -> None:
    specs = [parse_spec({**BASE, **config}) for config in MIXED]
    assert len({pack_key(spec) for spec in specs}) == 1
    assert pack_mismatch([s for s in specs if isinstance(s, TrainSpec)]) is None


@pytest.mark.parametrize(
    "field, value",
    [("batch_size", 16), ("max_length", 64), ("max_steps", 6), ("precision", "bf16"),
     ("max_train_samples", 100), ("max_eval_samples", 50), ("eval_every", 2), ("epochs", 2)],
)
def test_pack_key_separates_jobs_whose_data_stream_differs(field: str, value: Any) -> None:
    assert pack_key(_train(**{field: value})) != pack_key(_train())
    assert field in (pack_mismatch([_train(), _train(**{field: value})]) or "")


def test_synthetic_jobs_have_no_pack_key() -> None:
    assert pack_key(parse_spec({"kind": "synthetic"})) is None


def _submit(database: Database, configs: list[dict[str, Any]], priority: int = 0) -> None:
    with database.session() as session:
        sweeps.create_sweep(session, "pack", BASE, configs=configs, priority=priority)


def test_a_pack_claim_hands_out_jobs_of_one_key_each_with_its_own_lease(
    database: Database,
) -> None:
    _submit(database, MIXED)
    with database.session() as session:
        sweeps.create_sweep(session, "synthetic", {"kind": "synthetic"}, priority=-1)
    with database.session() as session:
        pack = claim_pack(session, "w", "cuda:0", 10**6, 3, 60, 3)
    assert pack is not None and pack.pack_id is not None
    assert len(pack.claims) == 3
    assert len({claim.lease_id for claim in pack.claims}) == 3
    assert {claim.job.pack_id for claim in pack.claims} == {pack.pack_id}
    assert len({claim.job.pack_key for claim in pack.claims}) == 1
    assert [claim.job.id for claim in pack.claims] == sorted(c.job.id for c in pack.claims)
    with database.session() as session:
        rest = claim_pack(session, "w", "cuda:0", 10**6, 3, 60, 3)
        synthetic = claim_pack(session, "w", "cuda:0", 10**6, 3, 60, 3)
        nothing = claim_pack(session, "w", "cuda:0", 10**6, 3, 60, 3)
    assert rest is not None and len(rest.claims) == 1 and rest.pack_id is None
    assert rest.claims[0].job.pack_id is None
    assert synthetic is not None and synthetic.claims[0].job.kind == "synthetic"
    assert nothing is None


def test_a_pack_takes_only_as_many_jobs_as_its_memory_fits(database: Database) -> None:
    _submit(database, MIXED)
    spec = parse_spec({**BASE, **MIXED[0]})
    assert isinstance(spec, TrainSpec)
    base, share = pack_memory_mb(spec, {})
    with database.session() as session:
        pack = claim_pack(session, "w", None, base + 2 * share, 8, 60, 3)
    assert pack is not None and len(pack.claims) == 2


def test_the_pack_share_is_learned_from_a_finished_pack(database: Database) -> None:
    _submit(database, MIXED)
    with database.session() as session:
        pack = claim_pack(session, "w", None, 10**6, 4, 60, 3)
    assert pack is not None and len(pack.claims) == 4
    spec = parse_spec(pack.claims[0].job.config)
    assert isinstance(spec, TrainSpec)
    peak = backbone_memory_mb(spec) + 4 * 1000
    with database.session() as session:
        for claim in pack.claims:
            complete_job(session, claim.job.id, claim.lease_id, {"peak_memory_mb": peak})
    with database.session() as session:
        learned = session.get(ObservedMemory, share_key(pack.claims[0].job.shape_key))
        alone = session.get(ObservedMemory, pack.claims[0].job.shape_key)
        assert learned is not None and learned.peak_memory_mb == 1000
        assert alone is None  # a pack's peak says nothing about one job alone
        assert pack_memory_mb(spec, {learned.shape_key: 1000})[1] == 1000


def test_racing_pack_claimers_never_share_a_job(database: Database) -> None:
    _submit(database, [{**MIXED[seed % 4], "seed": seed} for seed in range(24)])
    start = threading.Barrier(6)
    taken: list[int] = []

    def race(index: int) -> None:
        start.wait(timeout=30)
        while True:
            with database.session() as session:
                pack = claim_pack(session, f"w{index}", None, 10**6, 4, 60, 3)
            if pack is None:
                return
            taken.extend(claim.job.id for claim in pack.claims)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(taken) == 24 and len(set(taken)) == 24


def test_a_requeued_job_forgets_its_pack(database: Database) -> None:
    _submit(database, MIXED[:2])
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC)
    with database.session() as session:
        pack = claim_pack(session, "w", None, 10**6, 4, 10, 3, now=start)
    assert pack is not None and pack.pack_id is not None
    with database.session() as session:
        assert reap_expired(session, 3, start + timedelta(seconds=30)) == 2
    with database.session() as session:
        jobs = session.query(Job).all()
        assert all(job.pack_id is None and job.status == "queued" for job in jobs)
    with database.session() as session:
        single = claim_job(session, "w", None, 10**6, 60, 3, now=start + timedelta(seconds=31))
    assert single is not None and single.job.pack_id is None
