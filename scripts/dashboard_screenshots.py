"""Screenshots of every dashboard page into docs/img/, for the README.

With ``--db`` (how the README's screenshots are made): serves an existing SQLite database, such
as the one ``tenslora run`` kept for the study of docs/results.md, and photographs its sweep
``--sweep`` (grouped by tag, compared with ``--compare-to``) and one of its finished jobs:

    python scripts/dashboard_screenshots.py --db study.db --sweep 2 --compare-to tag:lora

An admin token named ``screenshots`` is added to that database so the browser can sign in.

Without ``--db``: starts the real server on a throwaway SQLite file, stores the shape of the
paper's Table 2 (LoRA and the 7 constructions under isorank and isoparameters, 2 tasks, 3 seeds:
train jobs whose results and curves are made up and posted through the worker API, nothing is
trained) plus a sweep still running, and photographs those (for trying the pages, not for docs).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launch.server import create_token, start_server  # noqa: E402
from tenslora.core.adapter_config import AdapterConfig  # noqa: E402
from tenslora.core.parameter_table import method_rows  # noqa: E402
from tenslora.core.regimes import predict_parameters  # noqa: E402
from tools.dashboard_fixture import (  # noqa: E402
    SESSION_COOKIE,
    Api,
    chromium,
    running_server,
    sign_in,
    training_points,
)

TASKS = ("cola", "mrpc")


def table2_configs() -> list[dict[str, Any]]:
    """LoRA, then each construction under isorank and isoparameters (paper section 4.3)."""
    configs = []
    for row in method_rows(768, 12, 12, 4):
        regime = {"lora": "", "isorank": "-isorank", "isoparameters": "-isoparams"}[row["regime"]]
        configs.append({"tag": row["method"] + regime, "adapter": {
            "method": row["method"], "factorization": "tucker", "ranks": row["ranks"]}})
    return configs


def outcome(config: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Made-up numbers loosely shaped like the paper's: isoparameters near LoRA, isorank below."""
    params = predict_parameters(AdapterConfig.from_dict(config["adapter"]), 768, 12, 12)
    base = {"cola": 0.80, "mrpc": 0.86}[config["task"]]
    accuracy = base + 0.012 * math.log10(params / 221_184 + 1e-3) + rng.gauss(0, 0.006)
    return {"accuracy": round(accuracy, 4), "mcc": round(2 * accuracy - 1.05, 4),
            "adapter_params": params, "wall_s": round(rng.uniform(280, 340), 1),
            "peak_memory_mb": 4_100}


def seed(api: Api) -> int:
    """Stores the sweeps; returns the id of a finished qkv job (for the job page)."""
    rng = random.Random(0)
    table2 = api.submit({"name": "table2-roberta", "base": {
        "kind": "train", "backbone": "roberta-base", "train": {"epochs": 3}},
        "configs": table2_configs(), "grid": {"task": list(TASKS), "seed": [0, 1, 2]}})
    qkv_job = 0
    for _ in range(table2["n_jobs"]):
        claim = api.claim(worker_id="gpu-host-1", device="cuda:0")
        config = claim["job"]["config"]
        api.post_metrics(claim, training_points(n_steps=30))
        api.finish(claim, outcome(config, rng))
        if config["tag"] == "qkv-isoparams" and not qkv_job:
            qkv_job = claim["job"]["id"]
    running = api.submit({"name": "core-lr-multiplier", "base": {
        "kind": "synthetic", "tag": "qkv_depth-isoparams", "outcome": {"accuracy": 0.83}},
        "grid": {"seed": list(range(10))}})
    for _ in range(4):
        api.finish(api.claim(worker_id="gpu-host-2", device="cuda:1"))
    api.claim(worker_id="gpu-host-2", device="cuda:1")
    assert running["n_jobs"] == 10
    return qkv_job


def shoot(url: str, token: str, out: Path, pages: dict[str, str]) -> list[Path]:
    written = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      device_scale_factor=1)
        context.add_cookies([{"name": SESSION_COOKIE, "value": sign_in(url, token), "url": url}])
        page = context.new_page()
        for name, path in pages.items():
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            if name in ("sweep", "job"):
                page.wait_for_selector(".plot svg.main-svg .scatterlayer .point")
            target = out / f"dashboard-{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
        context.close()
    return written


def pages(sweep_id: int, job_id: int, query: str) -> dict[str, str]:
    return {"sweeps": "/", "sweep": f"/sweeps/{sweep_id}?{query}", "job": f"/jobs/{job_id}",
            "workers": "/workers"}


def finished_job(url: str, token: str, sweep_id: int, tag: str | None) -> int:
    """A succeeded job of the sweep (of ``tag`` when given), for the job page."""
    from protocol.client import ApiClient

    with ApiClient(url, token) as client:
        for job in client.iter_jobs(sweep_id=sweep_id, status="succeeded"):
            if tag is None or job.config.get("tag") == tag:
                return job.id
    raise SystemExit(f"sweep {sweep_id} has no succeeded job" + (f" tagged {tag}" if tag else ""))


def shoot_database(args: argparse.Namespace) -> list[Path]:
    """The pages of a sweep stored in an existing SQLite file, served as it is."""
    from scheduler.migrate import upgrade

    database_url = f"sqlite:///{args.db.resolve()}"
    upgrade(database_url)
    token = create_token(database_url, "admin", "screenshots")
    query = urlencode({"group_by": "tag", "metric": "accuracy",
                       **({"compare_to": args.compare_to} if args.compare_to else {})})
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(database_url, Path(tmp) / "server.log")
        try:
            job_id = finished_job(server.url, token, args.sweep, args.job_tag)
            return shoot(server.url, token, args.out, pages(args.sweep, job_id, query))
        finally:
            server.stop()


def shoot_invented(args: argparse.Namespace) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as server:
        token = create_token(server.database_url, "admin", "alice")
        api = Api(server.url, token, create_token(server.database_url, "worker", "gpu-hosts"))
        job_id = seed(api)
        try:
            return shoot(server.url, token, args.out,
                         pages(1, job_id, "group_by=tag&columns=tasks&metric=accuracy"))
        finally:
            api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--db", type=Path, help="SQLite file to photograph (e.g. the study's)")
    parser.add_argument("--sweep", type=int, default=1, help="with --db: the sweep's id")
    parser.add_argument("--compare-to", help="with --db: the baseline row, e.g. tag:lora")
    parser.add_argument("--job-tag", help="with --db: the job page shows a job of this tag")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.db is not None and not args.db.is_file():
        parser.error(f"--db {args.db}: no such file")
    for path in shoot_database(args) if args.db else shoot_invented(args):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
