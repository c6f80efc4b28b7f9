"""The whole pipeline under the real `dvc`, logging to a real MLflow sqlite store.

One project per module: a cold `dvc repro`, then the reruns a data scientist does (no-op,
optimizer change, calibration change, `dvc exp run -S`), each checked by which stages ran and
by what reached MLflow. The queued sweep (`dvc exp run --queue`, `dvc queue start -j 2`) is
tests/test_sweep.py's, through `mnist-softmax sweep --queue`.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, make_project, run
from test_dvc_foundation import ran_stages
from test_dvc_yaml import declared_params

from mnist_softmax.scoped_config import AUDIT_ENV

pytestmark = pytest.mark.slow

LOOPBACK = ("127.0.0.1", "localhost", "::1")

ALL_STAGES = ["compose", "fetch", "ingest", "preprocess", "train", "calibrate", "evaluate", "log"]


def mlflow_runs(path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist-softmax")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def set_param(path, relative: str, key: str, value: object) -> None:
    """Change one top-level key of a params/ file in place, keeping its comment."""
    file = path / "params" / relative
    text, count = re.subn(rf"(?m)^{key}: *[^ #]+", f"{key}: {value}", file.read_text())
    assert count == 1, f"{key} not in {relative}"
    file.write_text(text)


def composed(path) -> dict:
    return yaml.safe_load((path / "params.yaml").read_text())


@pytest.fixture(scope="module")
def repro(tmp_path_factory, shared_mnist):
    """A project after one cold `dvc repro`: (path, env, stdout of the cold run)."""
    path, env = make_project(tmp_path_factory.mktemp("e2e"), shared_mnist.as_uri())
    env[AUDIT_ENV] = str(path.parent / "params-audit")  # each stage writes the keys it read
    started = time.perf_counter()
    cold = run(["dvc", "repro"], path, env)
    print(f"cold dvc repro: {time.perf_counter() - started:.1f} s")
    return path, env, cold.stdout


def test_cold_repro_runs_every_stage_and_logs_one_run(repro):
    path, _, stdout = repro
    assert ran_stages(stdout) == ALL_STAGES
    metrics = json.loads((path / "reports/metrics.json").read_text())
    assert metrics["test"]["acc"] >= 0.955  # deskewed: under half the error of LeCun's linear rows
    sets = metrics["conformal"]  # issue 24: the default run's prediction sets at alpha = 0.05
    assert 0.94 <= sets["coverage"] <= 0.97 and sets["mean_set_size"] <= 1.5
    assert sets["size_0"] + sets["size_1"] + sets["size_2_or_more"] == pytest.approx(1)
    report = json.loads((path / "reports/conformal.json").read_text())
    assert sum(c["n"] for c in report["per_class"].values()) == 10000
    for png in ("reliability", "confusion", "curves", "weights", "mistakes", "prediction_sets"):
        assert (path / "reports/figures" / f"{png}.png").stat().st_size > 1000
    runs = mlflow_runs(path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test/acc"] == pytest.approx(metrics["test"]["acc"])
    assert runs[0].data.metrics["test_sets/coverage"] == pytest.approx(sets["coverage"])
    assert runs[0].data.params["optimizer.lr"] == str(composed(path)["optimizer"]["lr"])


def test_every_declared_param_is_read(repro):
    """The other half of dvc.yaml's exactness: no stage declares a param it never reads."""
    path, _, _ = repro
    for stage in ALL_STAGES[1:]:
        reads = json.loads((path.parent / "params-audit" / f"{stage}.json").read_text())
        unread = [k for k in declared_params(stage) if not any(r == k or r.startswith(f"{k}.")
                                                               for r in reads)]  # fmt: skip
        assert not unread, f"{stage} declares {unread} but never reads them"


def _local(url: str) -> bool:
    """Whether a request stays on the machine: a file, inline data, or a loopback host."""
    parsed = urlparse(url)
    return parsed.scheme in ("file", "data", "blob", "about") or parsed.hostname in LOOPBACK


def test_plots_show_draws_offline_with_the_shipped_template(repro, browser, screenshots_dir):
    """`dvc plots show` with .dvc/config's template: charts drawn, no request off the machine.

    DVC's default page loads vega from a CDN and stays blank offline; the template inlines it.
    """
    path, env, _ = repro
    template = REPO / ".dvc" / "plots" / "template.html"
    if not template.is_file():
        pytest.fail(f"{template} not found: run `make plots-template`")
    (path / ".dvc" / "plots").mkdir(exist_ok=True)
    shutil.copy2(template, path / ".dvc" / "plots" / "template.html")
    plots = json.loads(run(["dvc", "plots", "show", "--json", "--split"], path, env).stdout)["data"]
    series = {d["filename"] for d in plots["reliability"][0]["anchor_definitions"]
              ["<DVC_METRIC_DATA>"]}  # fmt: skip
    assert series == {"reliability_uncalibrated.csv", "reliability_calibrated.csv"}
    page_dir = path.parent / "dvc_plots"  # outside the project: later tests see a clean tree
    run(["dvc", "plots", "show", "-o", str(page_dir)], path, env)
    html = (page_dir / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html
    off_machine: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.route("**/*", lambda route: route.continue_() if _local(route.request.url)
                   else (off_machine.append(route.request.url), route.abort()))  # fmt: skip
        page.goto((page_dir / "index.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.vega-embed canvas, "
                               ".vega-embed svg.marks').length >= 4", timeout=30_000)  # fmt: skip
        charts = page.locator(".vega-embed")
        assert charts.count() == 4  # loss, accuracy, reliability, confusion
        assert all(charts.nth(i).bounding_box()["height"] > 200 for i in range(4))
        images = page.locator("img")
        assert images.count() == 6  # the evaluate stage's PNGs (prediction_sets.png the sixth)
        assert page.evaluate("Array.from(document.images).every(i => i.naturalWidth > 100)")
        page.screenshot(path=screenshots_dir / "dvc-plots-show.png", full_page=True)
    finally:
        page.close()
    assert off_machine == []


def test_metrics_match_the_committed_run_within_cross_machine_tolerance(repro):
    """Same seed, same code: bit-identical on one machine, equal to ~1e-3 across machines.

    BLAS kernels differ between CPUs, so the committed metrics (made on another machine) are
    compared with a tolerance, never bit for bit.
    """
    path, _, _ = repro
    here = json.loads((path / "reports/metrics.json").read_text())
    committed = json.loads((REPO / "reports/metrics.json").read_text())
    for key in ("acc", "nll", "nll_calibrated", "ece_calibrated"):
        assert here["test"][key] == pytest.approx(committed["test"][key], abs=2e-3), key
    assert here["temperature"] == pytest.approx(committed["temperature"], rel=2e-3)


def test_retrain_scores_equal_the_evaluate_metrics(repro, monkeypatch):
    """The retrain job scores a registered version with evaluate's formulas: same numbers.

    The registered pyfunc reads the raw test pixels and applies the model's own preprocessing
    (deskewing, in the shipped config), as evaluate did: equal to 1e-6 (BLAS may sum in
    another order in another process)."""
    from mnist_softmax.config import load_config
    from mnist_softmax.data.splits import load_split, split_path
    from mnist_softmax.tracking import registry

    path, _, _ = repro
    monkeypatch.chdir(path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(path))
    cfg = load_config(path / "params.yaml")
    test = load_split(split_path(cfg.paths.prepared_dir, "test"))
    registry.client_for(cfg.tracking)
    scores = registry.score_version(cfg.tracking.registered_model, "1", test, cfg)
    metrics = json.loads((path / "reports/metrics.json").read_text())["test"]
    for name, value in scores.items():
        assert value == pytest.approx(metrics[name.removeprefix("test/")], abs=1e-6), name


def test_predict_on_the_raw_test_file_through_the_registry_matches_evaluate(
    repro, shared_mnist, mnist
):
    """``mnist-softmax predict`` reads raw pixels and applies the model's own preprocessing."""
    path, env, _ = repro
    images = shared_mnist / "t10k-images-idx3-ubyte.gz"
    proc = run(["mnist-softmax", "predict", "--model", "models:/mnist-softmax/1", "--format",
                "csv", str(images)], path, env)  # fmt: skip
    labels = mnist["test_labels"]
    table = pd.read_csv(io.StringIO(proc.stdout), dtype={"label": str, "set": str})
    predicted = table["label"].astype(int).to_numpy()
    metrics = json.loads((path / "reports/metrics.json").read_text())
    assert len(predicted) == 10000
    assert np.mean(predicted == labels) == metrics["test"]["acc"]
    sets = [json.loads(cell) for cell in table["set"]]  # the served sets: what evaluate scored
    covered = [str(y) in s for y, s in zip(labels, sets, strict=True)]
    assert np.mean(covered) == metrics["conformal"]["coverage"]
    assert np.mean([len(s) for s in sets]) == pytest.approx(metrics["conformal"]["mean_set_size"])


def test_noop_repro_runs_nothing(repro):
    path, env, _ = repro
    started = time.perf_counter()
    noop = run(["dvc", "repro"], path, env)
    print(f"no-op dvc repro: {time.perf_counter() - started:.1f} s")
    assert ran_stages(noop.stdout) == []
    (only,) = mlflow_runs(path)
    assert only.info.run_name == "default"  # the shipped config, as `make run` logs it
    assert len(only.data.metrics) <= 35 and not any(
        k.startswith("calibration/") for k in only.data.metrics
    )
    assert only.data.tags["calibration.at_bound"] in ("true", "false")  # flags are tags


def test_optimizer_change_reruns_train_and_after_only(repro):
    path, env, _ = repro
    lr = composed(path)["optimizer"]["lr"]
    set_param(path, "optimizer/sgd.yaml", "lr", lr / 2)
    out = run(["dvc", "repro"], path, env)
    assert ran_stages(out.stdout) == ["compose", "train", "calibrate", "evaluate", "log"]
    first, second = mlflow_runs(path)[-2:]
    assert first.data.params["optimizer.lr"] == str(lr)
    assert second.data.params["optimizer.lr"] == str(lr / 2)
    assert first.data.metrics["val/nll"] != second.data.metrics["val/nll"]


def test_calibration_change_never_retrains(repro):
    path, env, _ = repro
    set_param(path, "calibration/temperature.yaml", "t_max", 10.0)
    set_param(path, "conformal/default.yaml", "alpha", 0.1)
    out = run(["dvc", "repro"], path, env)
    assert ran_stages(out.stdout) == ["compose", "calibrate", "evaluate", "log"]
    sets = json.loads((path / "reports/metrics.json").read_text())["conformal"]
    assert 0.88 <= sets["coverage"] <= 0.92 and sets["mean_set_size"] < 1


def test_exp_run_switches_optimizer(repro):
    path, env, _ = repro
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "tuned"], path, env)
    cmd = ["dvc", "exp", "run", "-S", "optimizer=lbfgs", "-S", "optimizer.max_iter=30"]
    out = run(cmd, path, env)
    assert "fetch" not in ran_stages(out.stdout) and "train" in ran_stages(out.stdout)
    assert json.loads((path / "reports/train.json").read_text())["optimizer"] == "lbfgs"
    assert yaml.safe_load((path / "params.yaml").read_text())["optimizer"]["name"] == "lbfgs"
    last = mlflow_runs(path)[-1]
    assert last.data.params["optimizer.name"] == "lbfgs"
    assert last.data.tags["dvc.exp_name"]
    assert last.info.run_name == "optimizer=lbfgs optimizer.max_iter=30"  # what -S changed
    assert len(last.data.metrics) <= 35


def test_renaming_a_class_retrains_and_the_served_model_carries_the_new_name(repro):
    """data.class_names goes into the model file: a rename must rerun train (it once did not)."""
    import mlflow

    from mnist_softmax.model.model_file import load_model

    path, env, _ = repro
    data_yaml = path / "params/data/mnist.yaml"
    data_yaml.write_text(
        data_yaml.read_text().replace('class_names: ["0",', 'class_names: ["zero",')
    )
    out = run(["dvc", "repro"], path, env)
    assert ran_stages(out.stdout) == [
        "compose",
        "ingest",  # class names are what a batch's labels are checked against
        "preprocess",
        "train",
        "calibrate",
        "evaluate",
        "log",
    ]
    assert load_model(path / "models/model.npz").class_names[0] == "zero"
    version = mlflow_runs(path)[-1].data.tags["registered_model_version"]
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow' / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model(f"models:/mnist-softmax/{version}")
    proba = served.predict(np.zeros((2, 784), dtype=np.uint8))
    assert list(proba.columns)[:2] == ["zero", "1"]
