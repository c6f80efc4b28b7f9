"""``mnist-softmax history`` and ``compare`` on a machine where nothing has run yet."""

from __future__ import annotations

import json

from mnist_softmax.commands import compare
from mnist_softmax.retraining import history


def test_history_without_reports_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert history.main([]) == 0
    assert "no retrain job recorded" in capsys.readouterr().out


def test_history_lists_every_job_newest_first(tmp_path):
    reports = tmp_path / "retrain"
    reports.mkdir()
    for stamp, decision, reasons in [
        ("2026-01-01T030000Z", "promoted", ["no champion yet"]),
        ("2026-01-02T030000Z", "failed", ["no mirror gave a valid file"]),
    ]:
        report = {"started": stamp, "decision": decision, "reasons": reasons}
        (reports / f"{stamp}-abc.json").write_text(json.dumps(report))
    table = history.decisions(10, reports)
    assert table["decision"].tolist() == ["failed", "promoted"]
    assert table["why"].iloc[0] == "no mirror gave a valid file"


def test_history_shows_the_batches_of_each_champion(tmp_path):
    reports = tmp_path / "retrain"
    reports.mkdir()
    report = {"started": "2026-01-03T030000Z", "decision": "promoted", "reasons": [],
              "new_batches": ["week-2"], "champion_batches": ["week-1", "week-2"],
              "metrics": {"challenger": {"test/acc": 0.93, "new_batches/acc": 0.88}}}  # fmt: skip
    (reports / "2026-01-03T030000Z-abc.json").write_text(json.dumps(report))
    row = history.decisions(10, reports).iloc[0]
    assert (row["new_batches"], row["champion_batches"]) == ("week-2", "week-1 week-2")
    assert (row["acc"], row["new_acc"]) == (0.93, 0.88)


def test_compare_does_not_create_a_store(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text((__import__("conftest").REPO / "params.yaml").read_text())
    assert compare.main(["--params", str(params)]) == 0
    assert not (tmp_path / "mlflow").exists()
