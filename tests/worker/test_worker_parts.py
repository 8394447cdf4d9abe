"""The worker's parts on their own: probes, the command line, the job child, the spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.processes import REPO, free_port, project_env, wait_for
from protocol.client import ApiClient, ApiUnavailable
from protocol.report import JobReport
from protocol.vocabulary import Outcome
from tests.worker.conftest import job_children
from worker.child import start_pack
from worker.probe import CpuProbe, FakeProbe, device_memory_mb
from worker.spool import Spool


def test_fake_gpus_parse_count_by_size_and_a_list_of_sizes() -> None:
    assert [d.total_memory_mb for d in FakeProbe.parse("2x16000").devices()] == [16000, 16000]
    assert [d.name for d in FakeProbe.parse("16000,8000").devices()] == ["fake:0", "fake:1"]
    assert FakeProbe.parse("1x500").free_memory_mb(0) == 500
    with pytest.raises(ValueError, match="--fake-gpus must look like 2x16000"):
        FakeProbe.parse("two gpus")


def test_cpu_probe_reports_the_hosts_available_memory() -> None:
    [device] = CpuProbe().devices()
    assert device.name == "cpu"
    assert 0 < CpuProbe().free_memory_mb(0) <= device.total_memory_mb


def test_claims_declare_the_memory_a_jobs_peak_is_measured_in() -> None:
    cpu = CpuProbe()
    [host] = cpu.devices()
    assert device_memory_mb(cpu, host) == host.total_memory_mb
    # A fake GPU's jobs run on the CPU: their peak is a resident size, bounded by the host's RAM.
    fake = FakeProbe.parse("1x100")
    [small] = fake.devices()
    assert device_memory_mb(fake, small) == host.total_memory_mb


def run_worker(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in project_env(**env).items() if not k.startswith("TENSLORA_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], cwd=REPO, env={**clean, **env},
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "t", "--fake-gpus", "1x100"], "no API URL"),
        (["--api", "http://127.0.0.1:9", "--fake-gpus", "1x100"], "no token"),
        (["--api", "http://x", "--token", "t", "--fake-gpus", "lots"], "--fake-gpus must look"),
        (["--api", "http://x", "--token", "t", "--fake-gpus", "2x10", "--gpus", "5"],
         "no GPU [5] here"),
        (["--api", "http://x", "--token", "t", "--cpu-slots", "1", "--poll-interval", "0"],
         "--poll-interval must be positive"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = run_worker(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_become_typed_settings_with_the_reserve_default_of_each_probe() -> None:
    from worker.main import build_parser
    from worker.settings import DEFAULT_NVML_RESERVE_MB, WorkerSettings

    args = build_parser().parse_args(["--api", "http://x", "--token", "t", "--cpu-slots", "2",
                                      "--spool-dir", "/tmp/spool"])
    settings = WorkerSettings.from_namespace(args)
    assert (settings.api, settings.token, settings.cpu_slots) == ("http://x", "t", 2)
    assert settings.spool_path() == Path("/tmp/spool")
    assert settings.reserve_for("nvml") == DEFAULT_NVML_RESERVE_MB
    assert settings.reserve_for("fake:1x100") == 0
    assert WorkerSettings(reserve_mb=7).reserve_for("nvml") == 7


def test_the_pack_size_is_the_flag_else_a_default_for_every_kind_of_device() -> None:
    from worker.main import build_parser, check_args
    from worker.settings import DEFAULT_PACK_SIZE, WorkerSettings

    defaults = WorkerSettings()
    assert defaults.pack_size_for("nvml") == DEFAULT_PACK_SIZE["nvml"]
    assert defaults.pack_size_for("fake:2x4000") == DEFAULT_PACK_SIZE["fake"]
    for cpu_only in ("cpu", "none"):  # "none": CPU slots and no GPU actor
        assert defaults.pack_size_for(cpu_only) == DEFAULT_PACK_SIZE["cpu"]
    args = build_parser().parse_args(["--api", "http://x", "--token", "t", "--pack-size", "1"])
    assert WorkerSettings.from_namespace(args).pack_size_for("nvml") == 1
    for bad in ("0", "1000"):
        args = build_parser().parse_args(["--api", "http://x", "--token", "t", "--pack-size", bad])
        with pytest.raises(Exception, match="--pack-size"):
            check_args(WorkerSettings.from_namespace(args))


def test_api_and_token_come_from_the_environment_too() -> None:
    result = run_worker("--fake-gpus", "lots", TENSLORA_API_URL="http://x", TENSLORA_TOKEN="t")
    assert "--fake-gpus must look" in result.stderr  # got past the API and token checks


def test_the_old_variable_name_is_not_read() -> None:
    result = run_worker("--fake-gpus", "1x100", TENSLORA_API="http://x", TENSLORA_TOKEN="t")
    assert result.returncode == 2 and "no API URL" in result.stderr


def test_no_nvidia_driver_is_a_clear_error_not_a_traceback() -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pytest.skip("this host has a working NVIDIA driver")
    result = run_worker("--api", "http://127.0.0.1:9", "--token", "t")
    assert result.returncode == 1
    assert "NVML" in result.stderr and "--fake-gpus" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_synthetic_child_reports_its_outcome(tmp_path: Path) -> None:
    spec = {"kind": "synthetic", "duration_s": 0.1, "outcome": {"accuracy": 0.75}}
    child = start_pack([spec], "cpu", tmp_path / "job.log")
    events = list(child.events())
    assert child.wait(timeout=30) == 0
    assert events[-1] == {"event": "end", "job": 0, "outcome": "succeeded",
                          "result": {"accuracy": 0.75}}


def test_a_child_asked_to_fail_reports_a_failed_end(tmp_path: Path) -> None:
    child = start_pack([{"kind": "synthetic", "duration_s": 0, "fail": True}], "cpu",
                       tmp_path / "job.log")
    events = list(child.events())
    assert child.wait(timeout=30) == 0  # the job failed, the pack's process did not
    assert events[-1]["event"] == "end" and events[-1]["outcome"] == "failed"
    assert "failed on purpose" in events[-1]["error"]


def test_a_child_that_cannot_run_its_pack_fails_every_job_and_exits_1(tmp_path: Path) -> None:
    unreadable = {"kind": "synthetic", "duration_s": "soon"}
    child = start_pack([unreadable, unreadable], "cpu", tmp_path / "pack.log")
    ends = [event for event in child.events() if event["event"] == "end"]
    assert child.wait(timeout=30) == 1
    assert [(end["job"], end["outcome"]) for end in ends] == [(0, "failed"), (1, "failed")]
    assert all(end["error"].startswith("ValueError: could not convert") for end in ends)


def test_a_stopped_job_leaves_its_pack_cancelled_while_its_packmate_succeeds(
    tmp_path: Path,
) -> None:
    child = start_pack([{"kind": "synthetic", "duration_s": 60},
                        {"kind": "synthetic", "duration_s": 1.0, "outcome": {"f1": 0.5}}],
                       "cpu", tmp_path / "pack.log")
    started = time.monotonic()
    child.stop_job(0)
    ends = [event for event in child.events() if event["event"] == "end"]
    assert child.wait(timeout=30) == 0
    assert time.monotonic() - started < 20  # not the 60 s the stopped job would have slept
    assert ends == [{"event": "end", "job": 0, "outcome": "cancelled"},
                    {"event": "end", "job": 1, "outcome": "succeeded", "result": {"f1": 0.5}}]


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    # A parent that starts a long job and is then killed with SIGKILL: no cleanup code runs.
    parent_code = (
        "import pathlib, sys, time\n"
        "from worker.child import start_pack\n"
        "child = start_pack([{'kind': 'synthetic', 'duration_s': 300}], 'cpu',"
        f" pathlib.Path({str(tmp_path / 'job.log')!r}))\n"
        "print(child.process.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO, env=project_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        log = tmp_path / "job.log"
        # Right after exec /proc may show an empty command line for a moment: wait for it.
        try:
            wait_for("the child to run", lambda: job_children({child_pid}) == {child_pid}, 10)
        except AssertionError as error:
            raise AssertionError(
                f"the child ended early: {log.read_text() if log.exists() else 'no log'}"
            ) from error
        parent.kill()
        parent.wait(timeout=10)
        wait_for("the child to die", lambda: not job_children({child_pid}), 30)
    finally:
        parent.kill()


def test_a_report_stays_spooled_while_the_api_is_unreachable(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    report = JobReport(7, "abc", 1, Outcome.succeeded, result={"accuracy": 1.0})
    path = spool.put(report)
    client = ApiClient(f"http://127.0.0.1:{free_port()}", "token")
    started = time.monotonic()
    with pytest.raises(ApiUnavailable):
        spool.send(client, path, retry_for_s=0.5)
    assert time.monotonic() - started < 5
    assert spool.flush(client, retry_for_s=0.2) == 0
    assert spool.pending() == [path]
    assert json.loads(path.read_text())["result"] == {"accuracy": 1.0}


def test_a_real_gpu_actor_pins_its_jobs_to_the_gpu_named_by_nvml_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.actor import pin_cuda_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what a joined Ray node may leave
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    pin_cuda_device(2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # NVML's numbering, not CUDA's
