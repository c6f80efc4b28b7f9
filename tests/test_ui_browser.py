"""The MLflow UI in a real browser, over a store with two runs, as a person would open it."""

from __future__ import annotations

import json
import socket
import urllib.parse

import pytest
from tracking_fixtures import EXPERIMENT

from mnist_softmax.ops.ui import runs_url, start_server, stop_server, wait_ready
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


def test_experiment_opens_on_the_runs_table_and_compare_shows_both(
    ui, page, logged_runs, screenshots_dir
):
    from mlflow.tracking import MlflowClient

    cfg = logged_runs[0.1][0]
    experiment = MlflowClient(cfg.tracking.uri).get_experiment_by_name(EXPERIMENT)
    url = runs_url(ui, EXPERIMENT)  # what `mnist-softmax ui` prints
    assert url.endswith(
        f"/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    )
    page.goto(url)
    for name in ("exp-a", "exp-b"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    assert page.get_by_text("Token Usage").count() == 0  # not the GenAI overview
    page.screenshot(path=screenshots_dir / "mlflow-runs.png")

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
    assert "exp-a" in text and "exp-b" in text
