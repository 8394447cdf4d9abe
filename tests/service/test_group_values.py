"""A results row's shared spec values (regime, method), on each backend, without HTTP."""

from __future__ import annotations

from typing import Any

from scheduler import results, sweeps
from scheduler.db import Database
from scheduler.queue import claim_job, complete_job

BASE: dict[str, Any] = {"kind": "train", "task": "synthetic_text", "backbone": "minilm"}


def test_group_values_give_each_row_its_shared_regime_and_method(database: Database) -> None:
    configs = [
        {"tag": "lora", "regime": "lora", "adapter": {"method": "lora"}},
        {"tag": "qkv-isorank", "regime": "isorank", "adapter": {"method": "qkv", "ranks": 4}},
        {"tag": "mixed", "regime": "isorank", "adapter": {"method": "att", "ranks": 4}},
        {"tag": "mixed", "regime": "isoparameters", "adapter": {"method": "att", "ranks": 8}},
    ]
    with database.session() as session:
        sweep_id = sweeps.create_sweep(session, "regimes", BASE, configs=configs).sweep.id
    for _ in configs:
        with database.session() as session:
            claim = claim_job(session, "w", None, 10**6, 60, 3)
            assert claim is not None
            complete_job(session, claim.job.id, claim.lease_id, {"accuracy": 0.5})
    with database.session(write=False) as session:
        rows = results.aggregate_results(session, sweep_id, ["tag"])
        shared = results.group_values(session, sweep_id, ["tag"], ["regime", "adapter.method"])
    by_tag = {row.group["tag"]: shared[results.group_key(row.group)] for row in rows}
    assert by_tag["lora"] == {"regime": "lora", "adapter.method": "lora"}
    assert by_tag["qkv-isorank"] == {"regime": "isorank", "adapter.method": "qkv"}
    # the two jobs of "mixed" disagree on the regime, agree on the method
    assert by_tag["mixed"] == {"regime": None, "adapter.method": "att"}
