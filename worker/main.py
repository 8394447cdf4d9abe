"""``tenslora-worker``: starts (or joins) Ray, one actor per device, and drains on SIGTERM.

The process is the Ray driver; its own Ray head listens on loopback only and requires a token
(``worker.ray_env``). It resends spooled reports while it runs; on SIGTERM or Ctrl-C it
stops claiming, gives running jobs ``--drain-timeout`` seconds to finish, gives the leases of the
rest back, stops Ray and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from protocol.client import quiet_http_logs
from protocol.models import MAX_PACK_JOBS
from worker.probe import Device, FakeProbe, NvmlProbe, ProbeError
from worker.ray_env import RayEnvironmentError, prepare_join, prepare_local_head
from worker.settings import DEFAULT_NVML_RESERVE_MB, WorkerSettings

log = logging.getLogger("worker")


class UsageError(Exception):
    """Bad flags or environment: printed without a traceback, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="tenslora-worker",
        description="Runs jobs of a tenslora scheduler on this host's GPUs (or CPU slots).",
    )
    parser.add_argument("--api", default=env("TENSLORA_API_URL"),
                        help="scheduler URL, e.g. http://host:8000 (env TENSLORA_API_URL)")
    parser.add_argument("--token", default=env("TENSLORA_TOKEN"),
                        help="a worker-role API token (env TENSLORA_TOKEN)")
    parser.add_argument("--gpus", help="GPU indices to use, e.g. 0,1 (default: all NVML sees)")
    parser.add_argument("--fake-gpus", metavar="NxMiB",
                        help="declared GPUs for hosts without one: 2x16000 or 16000,8000")
    parser.add_argument("--cpu-slots", type=int, default=0,
                        help="also run up to N jobs at once on the CPU")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    parser.add_argument("--max-jobs-per-gpu", type=int, default=8,
                        help="processes (jobs or packs) at once on one GPU")
    parser.add_argument("--pack-size", type=int, default=None,
                        help="most compatible train jobs trained in one process (a pack); 1 turns "
                             "packs off (default: 8 on GPUs, 1 on CPU slots and fake GPUs)")
    parser.add_argument("--reserve-mb", type=int, default=None,
                        help="MiB per GPU never offered to jobs "
                             f"(default {DEFAULT_NVML_RESERVE_MB} on real GPUs, 0 otherwise)")
    parser.add_argument("--poll-interval", type=float, default=2.0,
                        help="seconds between claims when nothing fits")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds running jobs get to finish after SIGTERM")
    parser.add_argument("--name", default=env("TENSLORA_WORKER_NAME") or socket.gethostname(),
                        help="worker id the API records (default: host name)")
    parser.add_argument("--spool-dir", default=env("TENSLORA_WORKER_SPOOL"),
                        help="where unsent results wait for the API (default: user data dir)")
    parser.add_argument("--stats-file", help="write per-job scheduling timings here on exit")
    return parser


def plan_devices(args: WorkerSettings) -> tuple[str, list[Device]]:
    """Which probe and devices the flags ask for: ``("nvml"|"fake:..."|"none", devices)``."""
    if args.fake_gpus:
        probe_kind = f"fake:{args.fake_gpus}"
        try:
            devices = FakeProbe.parse(args.fake_gpus).devices()
        except ValueError as error:
            raise UsageError(str(error)) from None
    elif args.cpu_slots and not args.gpus:
        return "none", []
    else:
        probe_kind, devices = "nvml", NvmlProbe().devices()
        if not devices:
            raise ProbeError("NVML sees no GPU on this host; use --cpu-slots N to run on the CPU")
    if args.gpus:
        try:
            wanted = {int(part) for part in args.gpus.split(",") if part.strip()}
        except ValueError:
            raise UsageError(f"--gpus must be indices like 0,1; got {args.gpus!r}") from None
        missing = wanted - {device.index for device in devices}
        if missing:
            raise UsageError(
                f"--gpus {args.gpus}: no GPU {sorted(missing)} here "
                f"(this host has {[device.index for device in devices]})"
            )
        devices = [device for device in devices if device.index in wanted]
    return probe_kind, devices


def check_args(args: WorkerSettings) -> None:
    if not args.api:
        raise UsageError("no API URL: pass --api http://HOST:PORT or set TENSLORA_API_URL")
    if not args.token:
        raise UsageError("no token: pass --token or set TENSLORA_TOKEN "
                         "(tenslora token create --role worker --name NAME)")
    for flag, value in (("--max-jobs-per-gpu", args.max_jobs_per_gpu),
                        ("--poll-interval", args.poll_interval),
                        ("--pack-size", 1 if args.pack_size is None else args.pack_size)):
        if value <= 0:
            raise UsageError(f"{flag} must be positive; got {value}")
    if args.pack_size is not None and args.pack_size > MAX_PACK_JOBS:
        raise UsageError(f"--pack-size must be at most {MAX_PACK_JOBS}; got {args.pack_size}")
    if args.cpu_slots < 0 or args.drain_timeout < 0 or (args.reserve_mb or 0) < 0:
        raise UsageError("--cpu-slots, --drain-timeout and --reserve-mb must not be negative")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_http_logs()
    args = WorkerSettings.from_namespace(build_parser().parse_args(argv))
    try:
        check_args(args)
        probe_kind, devices = plan_devices(args)
    except UsageError as error:
        print(f"tenslora-worker: error: {error}", file=sys.stderr)
        return 2
    except ProbeError as error:
        print(f"tenslora-worker: error: {error}", file=sys.stderr)
        return 1
    if not token_accepted(args.api, args.token):
        return 1
    ray_temp_dir = None
    if args.ray_address:
        prepare_join()
    else:
        try:
            ray_temp_dir = prepare_local_head()
        except RayEnvironmentError as error:
            print(f"tenslora-worker: error: {error}", file=sys.stderr)
            return 1
    # Ray loads only once the flags are known to be good, and after its environment is set.
    from worker.cluster import Cluster

    return Cluster(args, probe_kind, devices, ray_temp_dir).run()


def token_accepted(api_url: str, token: str) -> bool:
    """Fails fast on a refused token; an API that is down yet is fine (claims retry)."""
    from protocol.client import ApiClient, ApiRejected, ApiUnavailable

    client = ApiClient(api_url, token, timeout_s=5.0, retry_for_s=2.0)
    try:
        client.check_token()
    except ApiRejected as error:
        print(f"tenslora-worker: error: {api_url} refused the token ({error}); create one with "
              "tenslora token create --role worker --name NAME", file=sys.stderr)
        return False
    except ApiUnavailable as error:
        log.warning("the API does not answer yet (%s); the worker keeps trying", error)
    finally:
        client.close()
    return True

