"""The dashboard in a real headless Chromium against the real server with stored sweeps."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from api.dashboard.tables import format_number
from launch.processes import REPO, project_env
from launch.server import create_token
from scheduler.tokens import hash_token
from tools.dashboard_fixture import (
    CHROMIUM,
    SESSION_COOKIE,
    TABLE2_GROUPS,
    Api,
    chromium,
    run_all,
    running_server,
    sign_in,
    table2_sweep,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WAIT_MS = 15_000

if not Path(CHROMIUM).exists():
    message = f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see .ci/run)"
    if os.environ.get("TENSLORA_REQUIRE_BROWSER") == "1":
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp: Path = tmp_path_factory.mktemp("dashboard")
    with running_server(tmp) as server:
        admin = create_token(server.database_url, "admin", "alice")
        worker = create_token(server.database_url, "worker", "gpu-host-1")
        api = Api(server.url, admin, worker)
        table2 = api.submit(table2_sweep())
        job_ids = run_all(api, table2["n_jobs"])
        live = api.submit({"name": "live-sweep", "base": {
            "kind": "synthetic", "tag": "lora", "outcome": {"accuracy": 0.5}},
            "grid": {"seed": [0, 1, 2, 3, 4, 5]}})
        with chromium() as browser:
            yield SimpleNamespace(server=server, api=api, admin=admin, table2=table2,
                                  live=live, job_ids=job_ids, browser=browser,
                                  admin_session=sign_in(server.url, admin))
        api.close()


@pytest.fixture
def page(stack: SimpleNamespace) -> Iterator[Any]:
    """A signed-in browser tab (the cookie the login form sets)."""
    context = stack.browser.new_context()
    context.add_cookies([{"name": SESSION_COOKIE, "value": stack.admin_session,
                          "url": stack.server.url, "httpOnly": True}])
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()


def test_login_form_rejects_a_bad_token_and_signs_in_with_a_good_one(stack):
    context = stack.browser.new_context()
    tab = context.new_page()
    tab.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    assert "/login" in tab.url
    tab.fill("#token", "tl_not-a-real-token")
    with tab.expect_response(lambda r: r.url.endswith("/login")) as answer:
        tab.click("#login-form button[type=submit]")
    assert answer.value.status == 401
    assert "not valid" in tab.inner_text("#login-error")
    assert context.cookies() == []

    tab.fill("#token", stack.admin)
    tab.click("#login-form button[type=submit]")
    tab.wait_for_url(re.compile(rf"/sweeps/{stack.table2['id']}$"))
    (cookie,) = context.cookies()
    assert cookie["name"] == SESSION_COOKIE and cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict" and cookie["value"] != stack.admin
    html = tab.content()
    assert stack.admin not in html and hash_token(stack.admin) not in html
    context.close()


def _cells(tab: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(tag, column) -> the cell's data attributes, text and best mark, read from the DOM."""
    return {
        (cell["tag"], cell["column"]): cell
        for cell in tab.eval_on_selector_all(
            "#results tr.result-row td.cell[data-mean]",
            """cells => cells.map(td => ({
                tag: td.parentElement.firstElementChild.textContent.trim(),
                column: td.dataset.column, mean: Number(td.dataset.mean),
                std: td.dataset.std === '' ? null : Number(td.dataset.std),
                n: Number(td.dataset.n), text: td.querySelector('.value').textContent.trim(),
                best: td.classList.contains('best'),
                significant: td.classList.contains('significant'),
                marker: td.querySelector('sup.sig') !== null,
                comparison: (td.querySelector('small.cmp') || {}).textContent || null,
                p: td.dataset.pValue === undefined ? null : Number(td.dataset.pValue),
                bold: getComputedStyle(td).fontWeight}))""",
        )
    }


def test_results_table_shows_the_same_means_and_stds_as_the_api(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    cells = _cells(page)
    api_rows = stack.api.results(stack.table2["id"], "tag")
    assert len(api_rows) == len(TABLE2_GROUPS)
    params = dict(page.eval_on_selector_all(
        "#results tr.result-row",
        "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText])"))
    for row in api_rows:
        stats = row["metrics"]["adapter_params"]
        assert params[row["group"]["tag"]] == f"{stats['mean']:,.0f}"  # the "# params" column
        for name, stats in row["metrics"].items():
            if name == "adapter_params":
                continue
            cell = cells[(row["group"]["tag"], name)]
            assert (cell["mean"], cell["std"], cell["n"]) == (stats["mean"], stats["std"],
                                                             stats["n"])
            mean, std = format_number(stats["mean"]), format_number(stats["std"])
            assert cell["text"] == f"{mean} +/- {std} ({stats['n']})"
    tags = page.eval_on_selector_all("#results tr.result-row", "rs => rs.map(r => "
                                     "r.firstElementChild.textContent.trim())")
    assert tags == ["lora", "att-isorank", "qkv-isorank", "qkv_depth-isoparams"]
    sections = page.eval_on_selector_all("#results tr.section", "rs => rs.map(r => r.innerText)")
    assert sections == ["Isorank", "Isoparameters"]


def test_best_cell_of_each_column_is_marked(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    cells = _cells(page)
    api_rows = stack.api.results(stack.table2["id"], "tag")
    best_accuracy = max(api_rows, key=lambda r: r["metrics"]["accuracy"]["mean"])
    marked = [tag for (tag, column), cell in cells.items() if column == "accuracy" and cell["best"]]
    assert marked == [best_accuracy["group"]["tag"]] == ["qkv_depth-isoparams"]
    best = cells[("qkv_depth-isoparams", "accuracy")]
    assert int(best["bold"]) >= 700
    assert int(cells[("lora", "accuracy")]["bold"]) < 700


def test_cells_below_p_005_against_the_chosen_baseline_are_marked(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    assert page.locator("#baseline-label").inner_text() == "lora"  # the default baseline
    response = stack.api.admin.get(f"/api/v1/sweeps/{stack.table2['id']}/results",
                                   params={"group_by": "tag", "compare_to": "tag:lora"})
    expected = {r["group"]["tag"]: r["metrics"]["accuracy"] for r in response.json()["rows"]}
    cells = _cells(page)
    for tag, stats in expected.items():
        cell = cells[(tag, "accuracy")]
        if tag == "lora":
            assert cell["p"] is None and cell["comparison"] is None and not cell["marker"]
            continue
        assert cell["p"] == stats["p_value"]
        assert cell["significant"] == cell["marker"] == (stats["p_value"] < 0.05)
        assert cell["comparison"] == f"Δ {stats['delta']:+.4f} · p {stats['p_value']:.2g}"
    assert cells[("att-isorank", "accuracy")]["marker"]
    # Another baseline from the selector: the page reloads with it.
    page.select_option('#table-controls select[name="compare_to"]', "tag:qkv-isorank")
    page.click("#table-controls button[type=submit]")
    page.wait_for_url(re.compile(r"compare_to=tag%3Aqkv-isorank"))
    assert page.locator("#baseline-label").inner_text() == "qkv-isorank"
    assert page.locator("#results tr.baseline").count() == 1
    page.select_option('#table-controls select[name="compare_to"]', "")
    page.click("#table-controls button[type=submit]")
    page.wait_for_url(re.compile(r"compare_to=(&|$)"))
    assert page.locator("#results td[data-p-value]").count() == 0


def test_percent_of_lora_beside_each_row(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    rows = page.eval_on_selector_all(
        "#results tr.result-row",
        "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText, r.cells[2].innerText])")
    assert rows[0] == ["lora", "221,184", "100.0%"]
    assert rows[2] == ["qkv-isorank", "74,640", f"{100 * 74_640 / 221_184:.1f}%"]


def test_plots_render_as_svg_with_points(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    page.wait_for_selector("#pareto svg.main-svg .scatterlayer .point")
    assert page.locator("#pareto .scatterlayer .point").count() == len(TABLE2_GROUPS)

    job_id = stack.job_ids[0]
    page.goto(f"{stack.server.url}/jobs/{job_id}")
    page.wait_for_selector(".job-plot svg.main-svg .scatterlayer .point")
    titles = page.eval_on_selector_all(".job-plot", "ps => ps.map(p => p.dataset.title)")
    assert titles == ["Training loss", "Learning rate per group", "Gradient norm per mode",
                      "SVD entropy per mode", "Top-1 energy per mode"]
    grad = page.locator('.job-plot[data-title="Gradient norm per mode"]')
    assert grad.locator(".scatterlayer .trace").count() == 4  # Input, Output, QKV, Core
    assert grad.locator(".scatterlayer .point").count() == 4 * 12
    legend = grad.locator(".legendtext").all_text_contents()
    assert sorted(legend) == ["Core", "Input", "Output", "QKV"]
    assert page.locator("#suggested-ranks").is_visible()


def test_status_filter_lists_only_jobs_of_that_status(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    assert page.locator("#jobs tbody tr[data-status]").count() == stack.table2["n_jobs"]
    page.click('#status-filters a[data-status="failed"]')
    page.wait_for_url(re.compile(r"status=failed"))
    statuses = page.eval_on_selector_all("#jobs tbody tr[data-status]",
                                         "rs => rs.map(r => r.dataset.status)")
    assert statuses == ["failed"]
    page.click('#status-filters a[data-status="succeeded"]')
    page.wait_for_url(re.compile(r"status=succeeded"))
    statuses = page.eval_on_selector_all("#jobs tbody tr[data-status]",
                                         "rs => rs.map(r => r.dataset.status)")
    assert statuses == ["succeeded"] * 12


def test_group_by_picked_in_the_form_regroups_the_table(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.table2['id']}")
    page.fill('#table-controls input[name="group_by"]', "seed")
    page.click("#table-controls button[type=submit]")
    page.wait_for_url(re.compile(r"group_by=seed"))
    seeds = page.eval_on_selector_all("#results tr.result-row",
                                      "rs => rs.map(r => r.firstElementChild.innerText)")
    assert sorted(seeds) == ["0", "1", "2"]  # the failed seed-99 job has no result


def test_unknown_sweep_id_is_a_404_page(stack, page):
    response = page.goto(f"{stack.server.url}/sweeps/987654")
    assert response.status == 404
    assert "404" in page.inner_text("h1")
    assert "987654" in page.inner_text(".error-page")


def test_sweeps_page_lists_newest_first_with_progress(stack, page):
    page.goto(f"{stack.server.url}/")
    names = page.eval_on_selector_all("#sweeps tbody tr td:first-child a",
                                      "as => as.map(a => a.innerText)")
    assert names == ["live-sweep", "table2-mini"]
    table2 = page.locator(f'#sweeps tr[data-sweep-id="{stack.table2["id"]}"]')
    assert table2.locator('.seg.succeeded').get_attribute("data-count") == "12"
    assert table2.locator('.seg.failed').get_attribute("data-count") == "1"


def test_running_sweep_updates_itself_without_a_reload(stack, page):
    page.goto(f"{stack.server.url}/sweeps/{stack.live['id']}")
    page.evaluate("window.__sameDocument = true")
    assert page.locator('.progress .seg.succeeded').count() == 0
    run_all(stack.api, 2, with_metrics=False)
    page.wait_for_selector('.progress .seg.succeeded[data-count="2"]', timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.locator("#results td.cell[data-mean]").count() == 0:
        assert time.monotonic() < deadline, "results table never appeared"
        page.wait_for_timeout(250)
    assert page.locator("#results td.cell[data-n='2']").count() >= 1


def test_workers_page_shows_the_worker_and_its_device(stack, page):
    page.goto(f"{stack.server.url}/workers")
    row = page.locator('#workers tr[data-worker-id="gpu-host-1"]')
    assert "cuda:0" in row.inner_text()


ATTACK_PAGE = """<!doctype html><html><body>
<form id="forged" method="post" action="{target}/sweeps/{sweep_id}/cancel" target="sink"></form>
<iframe name="sink" id="sink"></iframe>
<iframe id="framed" src="{target}/sweeps/{sweep_id}" width="1100" height="900"></iframe>
<script>
fetch("{target}/sweeps/{sweep_id}/cancel", {{method: "POST", mode: "no-cors",
                                            credentials: "include"}})
  .finally(function () {{ document.body.dataset.fetched = "yes"; }});
document.getElementById("forged").submit();
</script></body></html>"""


@contextmanager
def attacker_site(html: str) -> Iterator[str]:
    """A page served from another port of the same host: the same site, another origin."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_page_on_another_port_cannot_cancel_a_signed_in_users_sweep(stack, page):
    """Auto-submitted form, no-cors fetch and a click in an iframe: all carry the signed-in
    user's cookie (another port is the same site), none cancels anything."""
    victim = stack.api.submit({"name": "victim", "base": {"kind": "synthetic"},
                               "grid": {"seed": [0, 1, 2]}})
    page.goto(f"{stack.server.url}/sweeps/{victim['id']}")
    assert page.locator("#cancel-sweep button").is_visible()  # the user could cancel it
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url.endswith("/cancel") else None)
    html = ATTACK_PAGE.format(target=stack.server.url, sweep_id=victim["id"])
    with attacker_site(html) as attacker:
        page.goto(attacker)
        page.wait_for_selector("body[data-fetched=yes]")
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(answers) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        with pytest.raises(PlaywrightError):  # the dashboard refuses to be framed
            page.frame_locator("#framed").locator("#cancel-sweep button").click(timeout=3000)
    assert answers == [403, 403]
    status = stack.api.admin.get(f"/api/v1/sweeps/{victim['id']}").json()["status"]
    assert status == "queued"
    stack.api.admin.post(f"/api/v1/sweeps/{victim['id']}/cancel").raise_for_status()


def test_live_refreshes_never_overlap(stack, page):
    """A refresh that hangs holds back the next one: at most one is ever in flight."""
    sweep = stack.api.submit({"name": "slow-refresh", "base": {"kind": "synthetic"},
                              "grid": {"seed": [0, 1]}})
    held: list[Any] = []
    page.route(lambda url: "partial=1" in url, lambda route: held.append(route))
    page.goto(f"{stack.server.url}/sweeps/{sweep['id']}")
    page.wait_for_timeout(10_000)  # three periods: an interval timer would have sent three
    assert len(held) == 1
    held[0].continue_()
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(held) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert len(held) == 2  # the next one came after the first ended
    held[1].continue_()
    page.unroute_all(behavior="ignoreErrors")
    stack.api.admin.post(f"/api/v1/sweeps/{sweep['id']}/cancel").raise_for_status()


def test_screenshot_script_photographs_a_kept_database(tmp_path: Path) -> None:
    """`scripts/dashboard_screenshots.py --db`: the README's pictures of a real sweep's runs."""
    with running_server(tmp_path) as server:
        api = Api(server.url, create_token(server.database_url, "admin", "alice"),
                  create_token(server.database_url, "worker", "gpu-host-1"))
        sweep = api.submit(table2_sweep("kept"))
        run_all(api, sweep["n_jobs"])
        api.close()
        database = Path(server.database_url.removeprefix("sqlite:///"))
    out = tmp_path / "img"
    shot = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dashboard_screenshots.py"), "--db", str(database),
         "--sweep", str(sweep["id"]), "--compare-to", "tag:lora", "--job-tag", "qkv-isorank",
         "--out", str(out)],
        capture_output=True, text=True, timeout=180, env=project_env())
    assert shot.returncode == 0, shot.stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == [f"dashboard-{page}.png" for page in ("job", "sweep", "sweeps", "workers")]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in out.iterdir())
    refused = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dashboard_screenshots.py"), "--db",
         str(tmp_path / "none.db")], capture_output=True, text=True, timeout=60,
        env=project_env())
    assert refused.returncode == 2 and "no such file" in refused.stderr
