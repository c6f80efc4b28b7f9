"""One full cycle of scheduled retraining on data that arrives, with the real dvc and MLflow.

ONE explicit scenario on one project, each step starting from the state the previous one left:
the first champion; then a good batch, a corrupt batch and a batch still being copied land in
the inbox and a job runs (accepts one, quarantines one, leaves one, watches the champion on the
new data, writes a drift report, retrains and decides under the rule plus the new-batch
margins); then a broken manifest makes the ingest fail and the champion stays.
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import make_project, run
from shipped import shipped_config
from test_retrain import champion, client, history, last_report, retrain

from mnist_softmax.config import RetrainConfig
from mnist_softmax.retraining.champion_rule import decide
from mnist_softmax.retraining.new_batches import as_new_batch_scores, rule_for

pytestmark = pytest.mark.slow

NAME = "mnist-softmax"


def make_batch(path, env, *args: str):
    return run([sys.executable, "-m", "mnist_softmax.cli", "make-batch", *args], path, env)


def test_rule_without_new_batches_drops_only_their_metrics():
    rule = RetrainConfig(["test/acc", "new_batches/acc"], ["new_batches/nll_calibrated"],
                         {"test/acc": 0.0, "new_batches/acc": 0.01})  # fmt: skip
    assert rule_for(rule, True) is rule
    plain = rule_for(rule, False)
    assert (plain.higher_is_better, plain.lower_is_better) == (["test/acc"], [])
    assert plain.margins == {"test/acc": 0.0}
    renamed = as_new_batch_scores({"test/acc": 0.9, "test/nll_calibrated": 0.3, "test/ece": 1})
    assert renamed == {"new_batches/acc": 0.9, "new_batches/nll_calibrated": 0.3}
    nll = {"new_batches/nll_calibrated": 0.3}
    worse_on_new = {"test/acc": 0.95, "new_batches/acc": 0.80, **nll}
    assert not decide(worse_on_new, {"test/acc": 0.9, "new_batches/acc": 0.85, **nll}, rule).promote
    assert decide(worse_on_new, {"test/acc": 0.9, "new_batches/acc": 0.805, **nll}, rule).promote


def test_a_full_cycle_on_new_data(tmp_path, shared_mnist):
    path, env = make_project(tmp_path, shared_mnist.as_uri())
    first = retrain(path, env)  # no champion, nothing in the inbox: as before this feature
    assert first.returncode == 0, first.stderr
    assert champion(path) == "1" and last_report(path)["new_batches"] == []

    make_batch(path, env, "week-1", "--count", "1500", "--rotate", "12", "--shift", "1")
    make_batch(path, env, "week-1-bad", "--count", "300", "--corrupt", "labels-out-of-range")
    make_batch(path, env, "late", "--count", "300")
    (path / "data/incoming/late/READY").unlink()  # still being copied when the job starts
    job = retrain(path, env)
    assert job.returncode == 0, job.stderr
    report = last_report(path)
    assert report["quarantined"] == ["week-1-bad"] and report["new_batches"] == ["week-1"]
    reason = (path / "data/quarantine/week-1-bad/REASON.txt").read_text()
    assert "label out of range" in reason
    assert (path / "data/incoming/late/images-idx3-ubyte.gz").is_file()  # left alone
    manifest = (path / "data/batches.yaml").read_text()
    assert "name: week-1\n" in manifest and "week-1-bad" not in manifest

    # the champion was watched on all 1500 new images before retraining
    assert 0.5 < report["monitoring"]["new_batches/acc"] < 1
    assert "champion v1 on the new batches week-1 (1500 images" in job.stderr
    drift = json.loads((path / report["drift_report"][0]).read_text())
    assert drift["n_new"] == 1500 and drift["n_pool"] == 60000 and drift["batches"] == ["week-1"]
    assert drift["champion"]["new_batches/acc"] == report["monitoring"]["new_batches/acc"]
    assert (path / report["drift_report"][1]).read_bytes()[:4] == b"\x89PNG"
    # the champion's prediction sets on the held-out slice: rotated, shifted digits are not
    # exchangeable with MNIST's, and the sets fall short of their promise: a drift signal
    coverage = drift["coverage"]
    week = coverage["batches"]["week-1"]
    assert coverage["alpha"] == 0.05 and week["n"] == 300
    assert week["drift"] == (week["coverage"] < 0.95) == coverage["drift"]
    assert week["coverage"] < 0.95 and week["mean_set_size"] > 0

    # both models compared on the held-out slice too, and the decision follows the rule
    scores = report["metrics"]
    assert {"new_batches/acc", "new_batches/nll_calibrated"} <= scores["challenger"].keys()
    assert {"new_batches/acc", "new_batches/nll_calibrated"} <= scores["champion"].keys()
    rule = shipped_config().retrain  # the shipped rule, new-batch margins included
    expected = (
        "promoted" if decide(scores["challenger"], scores["champion"], rule).promote else "kept"
    )
    assert report["champion_after"] == ("2" if expected == "promoted" else "1")
    assert report["decision"] == expected and report["challenger"] == "2"
    assert report["champion_batches"] == (["week-1"] if expected == "promoted" else [])

    # MLflow: the challenger's run says what it trained on and carries the drift report
    run_ = client(path).get_run(client(path).get_model_version(NAME, "2").run_id)
    assert run_.data.tags["data.batches"] == "week-1"
    assert len(run_.data.tags["data.manifest_sha256"]) == 64
    assert run_.data.tags["retrain.new_batches"] == "week-1"
    assert "test_batches/week-1/acc" in run_.data.metrics  # the MLflow name (run_record)
    assert "monitor/champion_new_batches_acc" in run_.data.metrics
    drift_files = {a.path for a in client(path).list_artifacts(run_.info.run_id, "drift")}
    assert {f"drift/{p.split('/')[-1]}" for p in report["drift_report"]} == drift_files
    row = history(path, env)[0]
    assert row[1] == expected and row[7] == "week-1"  # decision, new_batches
    assert row[8] == ("week-1" if expected == "promoted" else "")  # champion_batches

    # the copy finished: `mnist-softmax ingest` takes it in, through dvc (dvc.lock follows)
    (path / "data/incoming/late/READY").touch()
    ingested = run(["mnist-softmax", "ingest"], path, env)
    assert "accepted: late; quarantined: none; waiting: none" in ingested.stdout
    assert "Data and pipelines are up to date" not in run(["dvc", "status"], path, env).stdout

    # a broken manifest: the ingest stage fails, the job stops before training
    before = champion(path)
    make_batch(path, env, "week-2", "--count", "300")
    (path / "data/batches.yaml").write_text("batches: [unclosed\n")
    broken = retrain(path, env)
    assert broken.returncode != 0 and "is not a batch manifest" in broken.stderr
    assert champion(path) == before and last_report(path)["decision"] == "failed"
    assert (path / "data/incoming/week-2/READY").is_file()  # nothing taken from the inbox
