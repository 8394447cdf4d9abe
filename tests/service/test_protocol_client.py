"""The one API client (protocol.client) against the real server: typed answers, one error each."""

from __future__ import annotations

import pytest

from protocol.client import ApiClient, ApiRejected, Lease, LeaseLost
from tests.service.conftest import Server
from tests.service.test_pack_api import PACKABLE
from tests.service.test_service_api import submit


def test_a_pack_claim_gives_one_typed_lease_per_job_and_each_reports_alone(api: Server) -> None:
    methods = [{"adapter": {"method": m}} for m in ("lora", "qkv", "depth")]
    sweep = submit(api, {"name": "client-pack", "base": PACKABLE, "configs": methods})
    with ApiClient(api.url, api.tokens["worker"], retry_for_s=0) as client:
        pack = client.claim_pack("packer", "cuda:0", 10**6, max_jobs=3)
        assert pack is not None and pack.pack_id and pack.memory_estimate_mb > 0
        leases = pack.leases
        assert len(leases) == 3 and all(isinstance(x, Lease) for x in leases)
        assert len({lease.lease_id for lease in leases}) == 3
        first = leases[0]
        assert not client.heartbeat(first).cancelled
        assert client.complete(first.job_id, first.lease_id, {"accuracy": 1.0}).status == (
            "succeeded"
        )
        with pytest.raises(LeaseLost):  # 409: not the lease of that job
            client.fail(first.job_id, "not-the-lease", "x")
        assert client.claim_pack("packer", "cuda:0", 10**6, max_jobs=3) is None
    with ApiClient(api.url, api.tokens["admin"], retry_for_s=0) as admin:
        jobs = admin.jobs(sweep["id"])
        assert sorted(job.status for job in jobs) == ["running", "running", "succeeded"]
        with pytest.raises(ApiRejected) as refused:
            admin.get_sweep(10**6)
        assert refused.value.status_code == 404
