"""The MLflow UI in a real browser, over a store with two runs, as a person would open it."""

from __future__ import annotations

import json
import socket
import urllib.parse

import pytest
from tracking_fixtures import EXPERIMENT

from mnist_softmax.commands.ui import runs_url, start_server, stop_server, wait_ready
from mnist_softmax.tracking import run_record, runs_view
from mnist_softmax.tracking.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ui(logged_runs, tracking_store):
    """``mlflow server`` on a free loopback port over the two logged runs; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tracking_store.removeprefix("sqlite:///")
    store = Store(tracking_store, str(db.rsplit("/", 1)[0] + "/artifacts"))
    proc = start_server(store, "127.0.0.1", port)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def test_runs_table_and_charts_start_with_the_headline_under_readable_names(
    ui, page, logged_runs, screenshots_dir
):
    """What `mnist-softmax ui` opens: the runs table with the three headline metrics as
    columns (the experiment's shared view), then the chart view, whose first section is test
    accuracy, calibrated ECE and NLL, with legends naming what each run changed."""
    from mlflow.tracking import MlflowClient

    cfg = logged_runs[0.1][0]
    experiment = MlflowClient(cfg.tracking.uri).get_experiment_by_name(EXPERIMENT)
    url = runs_url(ui, EXPERIMENT)  # what `mnist-softmax ui` prints
    assert url.endswith(
        f"/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={runs_view.SHARE_KEY}"
    )
    names = [f"optimizer.epochs=3 optimizer.lr={lr}" for lr in logged_runs]
    page.goto(url)
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    assert page.get_by_text("Token Usage").count() == 0  # not the GenAI overview
    if page.get_by_role("button", name="Close").count():  # MLflow's assistant panel
        page.get_by_role("button", name="Close").first.click()
    page.get_by_text("test/nll_calibrated").first.wait_for(timeout=30_000)
    headers = page.eval_on_selector_all(".ag-header-cell", "cells => cells.map(c => c.innerText)")
    assert sorted(h for h in headers if h.startswith("test")) == sorted(run_record.HEADLINE)
    assert len(headers) <= 8, headers  # name, created, duration, the three metrics (+ checks)
    page.screenshot(path=screenshots_dir / "mlflow-runs.png")

    page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
    page.get_by_text("test_detail").first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # bars drawn, not spinners
    titles = page.eval_on_selector_all(
        "[data-testid=experiment-view-compare-runs-card-title], h3, h4",
        "nodes => nodes.map(n => n.innerText)",
    )
    body = page.inner_text("body")
    page.screenshot(path=screenshots_dir / "mlflow-charts.png")
    sections = [line.strip() for line in body.splitlines() if line.strip().startswith("test")]
    assert sections[:4] == ["test", "test/acc", *sections[2:4]], sections[:6]
    assert set(sections[1:4]) == set(run_record.HEADLINE), (sections, titles)
    for name in names:  # the legends: first 20 characters survive MLflow's truncation
        assert body.count(name[:20]) >= 3, f"legend of {name!r} not on the charts"


def test_compare_page_shows_both_runs_by_name(ui, page, logged_runs, screenshots_dir):
    from mlflow.tracking import MlflowClient

    cfg = logged_runs[0.1][0]
    experiment = MlflowClient(cfg.tracking.uri).get_experiment_by_name(EXPERIMENT)
    run_ids = [logged.run_id for _, logged, _ in logged_runs.values()]
    query = urllib.parse.urlencode(
        {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment.experiment_id])}
    )
    page.goto(f"{ui}/#/compare-runs?{query}")
    page.get_by_text("test/acc").first.wait_for(timeout=60_000)
    page.screenshot(path=screenshots_dir / "mlflow-compare.png", full_page=True)
    text = page.inner_text("body")
    for lr, (_, logged, _) in logged_runs.items():
        acc = MlflowClient(cfg.tracking.uri).get_run(logged.run_id).data.metrics["test/acc"]
        assert f"{acc:.4g}"[:5] in text, f"test/acc of lr={lr} ({acc}) not on the Compare page"
        assert f"optimizer.lr={lr}" in text
