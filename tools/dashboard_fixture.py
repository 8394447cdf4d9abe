"""A real server with stored sweeps, and a headless Chromium: what the dashboard tests
(``tests/dashboard/``) and ``scripts/dashboard_screenshots.py`` drive.

Sweeps go in through the HTTP API and jobs run through the worker endpoints (claim, metrics,
complete, fail), as a worker would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from api.dashboard.auth import COOKIE as SESSION_COOKIE
from launch.server import RunningServer, sqlite_url, start_server

CHROMIUM = os.environ.get("TENSLORA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
MODES = ("Input", "Output", "QKV", "Core")
#: Final (entropy_norm, top1_energy, effective rank) per mode, shaped like TensLoRA+'s finding:
#: Input and QKV redundant (one direction holds the energy), Output spread out.
SPECTRA: dict[str, tuple[float, float, float]] = {
    "Input": (0.35, 0.93, 1.8), "Output": (0.85, 0.25, 3.1), "QKV": (0.30, 0.95, 1.2),
}


@contextmanager
def running_server(tmp: Path, **env: str) -> Iterator[RunningServer]:
    """``tenslora serve`` on a fresh SQLite file; stopped (and waited for) on exit."""
    server = start_server(sqlite_url(tmp, "dashboard.db"), tmp / "server.log", env=env)
    try:
        yield server
    finally:
        server.stop()


def sign_in(url: str, token: str) -> str:
    """A dashboard session for ``token`` through the login form; returns the cookie's value."""
    response = httpx.post(f"{url}/login", data={"token": token, "next": "/"}, timeout=10.0)
    assert response.status_code == 303, response.text
    return response.cookies[SESSION_COOKIE]


class Api:
    """The HTTP API as a submitter and a worker use it."""

    def __init__(self, url: str, admin_token: str, worker_token: str) -> None:
        self.admin = httpx.Client(base_url=url, timeout=10.0,
                                  headers={"Authorization": f"Bearer {admin_token}"})
        self.worker = httpx.Client(base_url=url, timeout=10.0,
                                   headers={"Authorization": f"Bearer {worker_token}"})

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.admin.post("/api/v1/sweeps", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def claim(self, worker_id: str = "gpu-host-1", device: str = "cuda:0") -> dict[str, Any]:
        response = self.worker.post("/api/v1/jobs/claim", json={
            "worker_id": worker_id, "device": device, "free_memory_mb": 80_000,
        })
        assert response.status_code == 200, response.text
        return response.json()

    def post_metrics(self, claim: dict[str, Any], points: list[dict[str, Any]]) -> None:
        response = self.worker.post(f"/api/v1/jobs/{claim['job']['id']}/metrics",
                                    json={"lease_id": claim["lease_id"], "points": points})
        assert response.status_code == 200, response.text

    def finish(self, claim: dict[str, Any], result: dict[str, Any] | None = None) -> None:
        """Complete with ``result`` (default: a synthetic spec's outcome), or fail if it asks."""
        job = claim["job"]
        if job["config"].get("fail"):
            response = self.worker.post(f"/api/v1/jobs/{job['id']}/fail", json={
                "lease_id": claim["lease_id"], "error": "synthetic failure, as asked"})
        else:
            response = self.worker.post(f"/api/v1/jobs/{job['id']}/complete", json={
                "lease_id": claim["lease_id"],
                "result": job["config"]["outcome"] if result is None else result})
        assert response.status_code == 200, response.text

    def results(self, sweep_id: int, group_by: str) -> list[dict[str, Any]]:
        response = self.admin.get(f"/api/v1/sweeps/{sweep_id}/results",
                                  params={"group_by": group_by})
        assert response.status_code == 200, response.text
        return response.json()["rows"]

    def close(self) -> None:
        self.admin.close()
        self.worker.close()


# The paper's Table 2 in miniature: LoRA, two isorank and one isoparameters method, 3 seeds.
TABLE2_GROUPS: dict[str, tuple[float, list[float]]] = {
    "lora": (221_184, [0.811, 0.823, 0.817]),
    "att-isorank": (123_840, [0.774, 0.790, 0.781]),
    "qkv-isorank": (74_640, [0.801, 0.795, 0.808]),
    "qkv_depth-isoparams": (220_080, [0.829, 0.841, 0.836]),
}


def table2_sweep(name: str = "table2-mini") -> dict[str, Any]:
    configs = [
        {"tag": tag, "seed": seed,
         "outcome": {"accuracy": acc, "mcc": 2 * acc - 1.0, "adapter_params": params}}
        for tag, (params, accuracies) in TABLE2_GROUPS.items()
        for seed, acc in enumerate(accuracies)
    ]
    configs.append({"tag": "att-isorank", "seed": 99, "fail": True})
    return {"name": name, "base": {"kind": "synthetic", "duration_s": 0.0, "memory_mb": 10},
            "configs": configs}


def training_points(n_steps: int = 12, every: int = 20) -> list[dict[str, Any]]:
    """Curves shaped like a run's: loss, per-group lr, per-mode gradient norms and spectra."""
    points = []
    for i in range(n_steps):
        step = i * every
        points.append({"step": step, "name": "train/loss", "value": 0.7 * 0.9 ** i})
        for group in ("factors", "core"):
            points.append({"step": step, "name": f"lr/{group}", "value": 5e-4 * (1 + i) / n_steps})
        settle = 1.0 - 0.5 ** (i + 1)  # spectra move away from their start, then settle
        for k, mode in enumerate(MODES):
            points.append({"step": step, "name": f"grad_norm/{mode}", "value": (k + 1) / (i + 1)})
            if mode in SPECTRA:
                entropy_norm, top1, eff_rank = SPECTRA[mode]
                points += [
                    {"step": step, "name": f"svd_entropy/{mode}",
                     "value": 1.2 * entropy_norm * settle},
                    {"step": step, "name": f"svd_entropy_norm/{mode}",
                     "value": entropy_norm * settle},
                    {"step": step, "name": f"top1_energy/{mode}",
                     "value": 1.0 - (1.0 - top1) * settle},
                    {"step": step, "name": f"eff_rank/{mode}", "value": eff_rank},
                ]
    return points


def run_all(api: Api, n_jobs: int, with_metrics: bool = True) -> list[int]:
    """Claim and finish ``n_jobs`` jobs in queue order; returns their ids."""
    ids = []
    for _ in range(n_jobs):
        claim = api.claim()
        if with_metrics:
            api.post_metrics(claim, training_points())
        api.finish(claim)
        ids.append(claim["job"]["id"])
    return ids


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
