"""``compare_to`` on the results endpoint and the CLI: the real server on SQLite and Postgres.

Each p-value is checked against scipy's ``ttest_ind(equal_var=False)`` on the values the jobs
stored (read back through the jobs endpoint), not on the numbers the test submitted.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest
from scipy import stats

from tests.service.conftest import Server
from tests.service.test_service_api import SYNTHETIC, claim, run_cli, submit

# tag -> memory_mb -> accuracies of its seeds. memory_mb is a second group field, so each level
# has its own LoRA baseline; "flat" holds the degenerate cases.
SCORES: dict[str, dict[int, list[float]]] = {
    "lora": {100: [0.70, 0.72, 0.74, 0.71], 200: [0.60, 0.61, 0.65]},
    "qkv": {100: [0.75, 0.78, 0.80], 200: [0.66, 0.62, 0.70, 0.64]},
    "depth": {100: [0.69, 0.73], 200: [0.63]},
}


def _finish_sweep(api: Server, name: str, configs: list[dict[str, Any]]) -> int:
    sweep = submit(api, {"name": name, "base": SYNTHETIC, "configs": configs})
    with api.client("worker") as client:
        for _ in range(len(configs)):
            lease = claim(client)
            assert lease is not None
            client.post(
                f"/api/v1/jobs/{lease['job']['id']}/complete",
                json={"lease_id": lease["lease_id"], "result": lease["job"]["config"]["outcome"]},
            ).raise_for_status()
    return int(sweep["id"])


@pytest.fixture
def scored_sweep(api: Server) -> int:
    configs = [
        {"tag": tag, "memory_mb": memory, "seed": seed,
         "outcome": {"accuracy": value, "wall_s": 1.0 + seed}}
        for tag, levels in SCORES.items()
        for memory, values in levels.items()
        for seed, value in enumerate(values)
    ]
    return _finish_sweep(api, "compare", configs)


def _stored_values(api: Server, sweep_id: int) -> dict[tuple[str, int], list[float]]:
    """Accuracy of each (tag, memory_mb) as the service stored it."""
    with api.client() as client:
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep_id, "limit": 1000}).json()
    values: dict[tuple[str, int], list[float]] = {}
    for job in jobs["items"]:
        key = (job["config"]["tag"], job["config"]["memory_mb"])
        values.setdefault(key, []).append(job["result"]["accuracy"])
    return values


def _results(api: Server, sweep_id: int, group_by: str, **params: str) -> Any:
    """``group_by`` comma-separated here, as the parameter repeated on the wire."""
    with api.client("worker") as client:
        return client.get(f"/api/v1/sweeps/{sweep_id}/results",
                          params={"group_by": group_by.split(","), **params})


def test_compare_to_gives_delta_and_welch_p_against_each_levels_baseline(
    api: Server, scored_sweep: int
) -> None:
    response = _results(api, scored_sweep, group_by="tag,memory_mb", compare_to="tag:lora")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["compare_to"] == {"tag": "lora"}
    stored = _stored_values(api, scored_sweep)
    rows = {(r["group"]["tag"], r["group"]["memory_mb"]): r for r in answer["rows"]}
    assert {key for key, row in rows.items() if row["baseline"]} == {("lora", 100), ("lora", 200)}
    for (tag, memory), row in rows.items():
        accuracy = row["metrics"]["accuracy"]
        if tag == "lora":
            assert accuracy["delta"] is None and accuracy["p_value"] is None
            continue
        mine, base = stored[(tag, memory)], stored[("lora", memory)]
        assert accuracy["delta"] == pytest.approx(
            sum(mine) / len(mine) - sum(base) / len(base), abs=1e-12
        )
        if len(mine) < 2:  # depth at 200 MB ran once: no variance, no test
            assert accuracy["p_value"] is None
            continue
        expected = stats.ttest_ind(mine, base, equal_var=False).pvalue
        assert accuracy["p_value"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    # The data make one comparison clearly significant and one clearly not.
    assert rows[("qkv", 100)]["metrics"]["accuracy"]["p_value"] < 0.05
    assert rows[("depth", 100)]["metrics"]["accuracy"]["p_value"] > 0.5


def test_compare_to_on_every_group_field_and_without_compare_to(
    api: Server, scored_sweep: int
) -> None:
    both = _results(
        api, scored_sweep, group_by="tag,memory_mb", compare_to="tag:lora,memory_mb:200"
    ).json()
    baselines = [r["group"] for r in both["rows"] if r["baseline"]]
    assert baselines == [{"tag": "lora", "memory_mb": 200}]
    qkv_100 = next(r for r in both["rows"] if r["group"] == {"tag": "qkv", "memory_mb": 100})
    stored = _stored_values(api, scored_sweep)
    expected = stats.ttest_ind(stored[("qkv", 100)], stored[("lora", 200)], equal_var=False)
    assert qkv_100["metrics"]["accuracy"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-6)
    # kind is the same for every row (the tag determines it): one LoRA row, all levels pooled.
    pooled = _results(api, scored_sweep, group_by="tag,kind", compare_to="tag:lora").json()
    assert [r["group"]["tag"] for r in pooled["rows"] if r["baseline"]] == ["lora"]
    qkv = next(r for r in pooled["rows"] if r["group"]["tag"] == "qkv")
    every = {tag: [v for (t, _), values in stored.items() if t == tag for v in values]
             for tag in ("qkv", "lora")}
    expected = stats.ttest_ind(every["qkv"], every["lora"], equal_var=False)
    assert qkv["metrics"]["accuracy"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-6)
    plain = _results(api, scored_sweep, group_by="tag").json()
    assert plain["compare_to"] is None
    assert not any(row["baseline"] for row in plain["rows"])
    assert all(m["delta"] is None and m["p_value"] is None
               for row in plain["rows"] for m in row["metrics"].values())


def test_constant_groups_give_p_zero_when_means_differ_and_null_when_equal(api: Server) -> None:
    # 0.1 three times and twice: SQL averages that differ in the last bit, equal values.
    configs = [
        {"tag": tag, "seed": seed, "outcome": {"accuracy": value}}
        for tag, value, runs in (("lora", 0.1, 3), ("same", 0.1, 2), ("higher", 0.7, 3))
        for seed in range(runs)
    ]
    sweep_id = _finish_sweep(api, "flat", configs)
    answer = _results(api, sweep_id, group_by="tag", compare_to="tag:lora").json()
    rows = {row["group"]["tag"]: row["metrics"]["accuracy"] for row in answer["rows"]}
    assert rows["same"]["delta"] == pytest.approx(0.0, abs=1e-12)
    assert rows["same"]["p_value"] is None
    assert rows["higher"]["delta"] == pytest.approx(0.6) and rows["higher"]["p_value"] == 0.0


@pytest.mark.parametrize(
    ("compare_to", "says"),
    [
        ("tag:lorax", "matches no row"),
        ("seed:1", "not one of group_by"),
        ("tag", "FIELD:VALUE"),
        ("tag:lora,tag:qkv", "twice"),
        ("a..b:1", "FIELD:VALUE"),
    ],
)
def test_unknown_or_malformed_baseline_gets_422_saying_why(
    api: Server, scored_sweep: int, compare_to: str, says: str
) -> None:
    response = _results(api, scored_sweep, group_by="tag,memory_mb", compare_to=compare_to)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


def test_cli_results_compare_to_as_markdown_and_csv(api: Server, scored_sweep: int) -> None:
    auth = {"TENSLORA_API_URL": api.url, "TENSLORA_TOKEN": api.tokens["submitter"]}
    args = ("results", str(scored_sweep), "--group-by", "tag,memory_mb", "--compare-to", "tag:lora")
    shown = run_cli(*args, "--format", "markdown", **auth)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "| tag | memory_mb | n | accuracy | wall_s |"
    assert lines[1] == "|:--|:--|--:|--:|--:|"
    qkv = next(line for line in lines if line.startswith("| qkv | 100 |"))
    answer = _results(api, scored_sweep, group_by="tag,memory_mb", compare_to="tag:lora").json()
    p_value = next(r for r in answer["rows"]
                   if r["group"] == {"tag": "qkv", "memory_mb": 100})["metrics"]["accuracy"]
    assert f"p={p_value['p_value']:.2g}\\*" in qkv and "Δ +" in qkv
    assert "| lora | 100 (baseline) |" in shown.stdout
    assert "Welch" in lines[-1]

    table = run_cli(*args, **auth)
    assert table.returncode == 0, table.stderr
    assert "Δ" in table.stdout and "(baseline)" in table.stdout

    as_csv = run_cli(*args, "--format", "csv", **auth)
    assert as_csv.returncode == 0, as_csv.stderr
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    qkv_row = next(r for r in records if r["tag"] == "qkv" and r["memory_mb"] == "100")
    assert math.isclose(float(qkv_row["accuracy_p_value"]), p_value["p_value"], rel_tol=1e-12)
    assert qkv_row["baseline"] == "false" and qkv_row["accuracy_delta"]

    as_json = run_cli(*args, "--format", "json", **auth)
    assert json.loads(as_json.stdout)["compare_to"] == {"tag": "lora"}
    refused = run_cli("results", str(scored_sweep), "--group-by", "tag",
                      "--compare-to", "tag:nope", **auth)
    assert refused.returncode == 2 and "matches no row" in refused.stderr


def test_cli_results_metrics_keeps_the_named_columns(api: Server, scored_sweep: int) -> None:
    auth = {"TENSLORA_API_URL": api.url, "TENSLORA_TOKEN": api.tokens["submitter"]}
    args = ("results", str(scored_sweep), "--group-by", "tag,memory_mb", "--format", "markdown")
    kept = run_cli(*args, "--metrics", "accuracy", **auth)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[0] == "| tag | memory_mb | n | accuracy |"
    # Names the runs never reported: the table keeps every metric rather than none.
    unknown = run_cli(*args, "--metrics", "bleu", **auth)
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout.splitlines()[0] == "| tag | memory_mb | n | accuracy | wall_s |"
