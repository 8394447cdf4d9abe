"""`tenslora sweep tune`: a sweep file's jobs as Ray Tune trials, recorded through the API.

The integration test starts the real server and runs the real command, which starts a real local
Ray on the CPU; the unit tests pin the resource and reporting rules.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from launch.processes import REPO, project_env
from tests.helpers.server import start_service
from worker.tune import TuneOptions, check_options, gpu_fraction, trial_resources
from worker.tune_trial import evaluations, final_metrics

TRAIN = {
    "kind": "train", "task": "sms_spam", "backbone": "minilm",
    "train": {"max_steps": 4, "batch_size": 4, "max_length": 16, "eval_every": 2,
              "log_every": 2, "max_train_samples": 32, "max_eval_samples": 16},
}
BAD_STEPS = 200  # 100 evaluations, if nothing stopped it
MIXED_SWEEP = {
    "name": "tune-mixed",
    "base": {},
    "configs": [
        {"kind": "synthetic", "tag": "synthetic", "duration_s": 0.2, "memory_mb": 10,
         "outcome": {"accuracy": 0.75}},
        {**TRAIN, "tag": "lora", "adapter": {"method": "lora", "ranks": 2}},
        {**TRAIN, "tag": "qkv_depth", "adapter": {"method": "qkv_depth", "ranks": [2, 2, 3, 2]}},
        # Built to lose: a learning rate that blows the eval loss up at once, and a long budget.
        # Trials run one at a time in this order, so the good ones have set ASHA's bar by then.
        {**TRAIN, "tag": "diverges", "adapter": {"method": "lora", "ranks": 2},
         "optim": {"lr": 3.0, "warmup_ratio": 0.0},
         "train": {**TRAIN["train"], "max_steps": BAD_STEPS}},
    ],
    "grid": {"seed": [0, 1]},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = start_service(tmp_path_factory.mktemp("tune-service"))
    yield running
    running.stop()


def _tune(service, sweep_path, *extra, token_role="admin", timeout=480):
    return subprocess.run(
        [sys.executable, "-m", "cli", "sweep", "tune", str(sweep_path), "--url", service.url,
         "--token", service.tokens[token_role], "--num-cpus", "2", *extra],
        env=project_env(RAY_TMPDIR="/tmp"), cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )


class RefusingProxy:
    """In front of the real server: answers 503 to every ``complete`` for ``refuse_s`` seconds
    from the first one (an API outage as the trial sees it), and passes everything else on."""

    def __init__(self, upstream: str, refuse_s: float) -> None:
        self.upstream, self.refuse_s = upstream, refuse_s
        self.refused = 0
        self._first_complete: float | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def refuse(self, method: str, path: str) -> bool:
        if method != "POST" or not path.endswith("/complete"):
            return False
        with self._lock:
            now = time.monotonic()
            self._first_complete = self._first_complete or now
            if now < self._first_complete + self.refuse_s:
                self.refused += 1
                return True
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.refuse(self.command, self.path):
                    status, content, kind = 503, b'{"detail": "down for the test"}', "json"
                else:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() in ("authorization", "content-type")}
                    answer = httpx.request(self.command, proxy.upstream + self.path,
                                           headers=headers, content=body, timeout=30)
                    status, content = answer.status_code, answer.content
                    kind = answer.headers.get("content-type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _forward

            def log_message(self, *_args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sweep_ids(service) -> list[int]:
    with service.client() as client:
        return [s["id"] for s in client.get("/api/v1/sweeps").json()["items"]]


@pytest.mark.slow
@pytest.mark.ray
def test_tune_runs_synthetic_and_train_jobs_and_records_them_through_the_api(service, tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(MIXED_SWEEP))
    done = _tune(service, path, "--asha", "eval/loss", "--mode", "min", "--grace-period", "1",
                 "--max-concurrent", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_id = int(done.stdout.strip().splitlines()[-1])
    with service.client() as client:
        sweep = client.get(f"/api/v1/sweeps/{sweep_id}").json()
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]
        assert sweep["n_jobs"] == 8 and sweep["counts"]["queued"] == sweep["counts"]["running"] == 0
        for job in jobs:
            assert job["worker_id"].startswith("tune-"), job
            if job["config"]["kind"] == "synthetic":
                assert job["status"] == "succeeded" and job["result"] == {"accuracy": 0.75}
                continue
            # A train trial reports each evaluation; ASHA may stop the weaker ones early.
            points = client.get(f"/api/v1/jobs/{job['id']}/metrics").json()["points"]
            assert {"train/loss", "eval/accuracy"} <= {p["name"] for p in points}
            if job["status"] == "failed":
                assert "stopped early by Ray Tune" in job["error"]
            else:
                assert job["status"] == "succeeded" and "mcc" in job["result"]
                # The trial's lease keeper uploaded its adapter, as a worker's does.
                adapter = client.get(f"/api/v1/jobs/{job['id']}/adapter")
                assert adapter.status_code == 200, adapter.text
            if job["config"]["tag"] == "diverges":  # ASHA stopped it long before its budget
                assert job["status"] == "failed", job
                evaluated = [p for p in points if p["name"] == "eval/loss"]
                assert 1 <= len(evaluated) < BAD_STEPS // 2, evaluated
        rows = client.get(
            f"/api/v1/sweeps/{sweep_id}/results", params={"group_by": "tag"}
        ).json()["rows"]
    synthetic = next(r for r in rows if r["group"]["tag"] == "synthetic")
    assert synthetic["n"] == 2 and synthetic["metrics"]["accuracy"]["mean"] == 0.75


@pytest.mark.slow
@pytest.mark.ray
def test_a_result_the_api_refuses_for_a_while_is_spooled_and_arrives(service, tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tune-outage", "base": {"kind": "synthetic", "duration_s": 0.2, "memory_mb": 10,
                                        "outcome": {"accuracy": 0.5}},
    }))
    proxy = RefusingProxy(service.url, refuse_s=14.0)  # longer than one send's retry window
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "sweep", "tune", str(path), "--url", proxy.url,
             "--token", service.tokens["admin"], "--num-cpus", "2"],
            env=project_env(RAY_TMPDIR="/tmp"), cwd=REPO, capture_output=True, text=True,
            timeout=480,
        )
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_id = int(done.stdout.strip().splitlines()[-1])
    assert proxy.refused >= 1
    assert "report spooled" in done.stderr + done.stdout  # the lease keeper's spool was used
    with service.client() as client:
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]
    assert [(j["status"], j["result"]) for j in jobs] == [("succeeded", {"accuracy": 0.5})]


def test_a_bad_asha_metric_is_refused_before_anything_is_stored(service, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "base": {"kind": "synthetic"}}))
    before = _sweep_ids(service)
    done = _tune(service, path, "--asha", "accuracy", timeout=120)
    assert done.returncode == 2 and "eval/" in done.stderr
    assert _sweep_ids(service) == before


def test_an_invalid_sweep_file_exits_2_with_the_apis_detail(service, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "base": {"kind": "train", "task": "nope",
                                                          "backbone": "minilm"}}))
    done = _tune(service, path, timeout=120)
    assert done.returncode == 2 and "task must be one of" in done.stderr


def test_a_worker_token_cannot_submit_the_sweep(service, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "base": {"kind": "synthetic"}}))
    done = _tune(service, path, token_role="worker", timeout=120)
    assert done.returncode != 0 and "403" in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("estimate_mb", "gpu_mb", "share"),
    [(30_000, 80_000, 0.5), (1_000, 8_000, 0.125), (9_000, 8_000, 1.0), (500, None, 1.0)],
)
def test_a_trial_takes_a_whole_gpu_unless_its_estimate_fits_several_times(
    estimate_mb, gpu_mb, share
):
    assert gpu_fraction(estimate_mb, gpu_mb) == share


def test_trials_ask_for_gpus_only_where_the_cluster_has_them():
    jobs = {7: {"memory_estimate_mb": 2_000}}
    options = TuneOptions(cpus_per_trial=0.5, gpu_memory_mb=8_000)
    config = {"job": {"id": 7}}
    assert trial_resources(jobs, options, cluster_gpus=2)(config) == {"CPU": 0.5, "GPU": 0.25}
    assert trial_resources(jobs, options, cluster_gpus=0)(config) == {"CPU": 0.5}


def test_each_evaluation_becomes_one_report_with_its_step():
    points = [
        {"step": 2, "name": "train/loss", "value": 0.7},
        {"step": 2, "name": "eval/accuracy", "value": 0.5},
        {"step": 2, "name": "eval/mcc", "value": 0.1},
        {"step": 4, "name": "eval/accuracy", "value": 0.6},
    ]
    assert evaluations(points) == [
        {"step": 2, "eval/accuracy": 0.5, "eval/mcc": 0.1},
        {"step": 4, "eval/accuracy": 0.6},
    ]


def test_the_final_report_carries_the_result_under_eval_names_too():
    assert final_metrics({"accuracy": 0.9, "note": "x", "ok": True}) == {
        "accuracy": 0.9, "eval/accuracy": 0.9,
    }


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (TuneOptions(asha_metric="mcc"), "eval/"),
        (TuneOptions(mode="best"), "--mode"),
        (TuneOptions(cpus_per_trial=-1), "negative"),
    ],
)
def test_bad_options_are_refused(options, needle):
    with pytest.raises(ValueError, match=needle):
        check_options(options)
