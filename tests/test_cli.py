"""Every ``mnist-softmax`` command: ``--help`` answers, and a failure is one masked line.

Each command runs through :func:`mnist_softmax.stage.run_command`. Here each one fails in its
cheapest real way, in a folder whose ``params.yaml`` points at a tracking server that is not
there, behind a URL holding a password: the password must reach neither stdout nor stderr,
whatever logger or exception carries the URL, and the failure is one ``[command] error:`` line
with the exit code of :mod:`mnist_softmax.errors`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import yaml
from conftest import REPO, stage_env

from mnist_softmax.cli import COMMANDS
from mnist_softmax.cli import main as cli_main

SECRET = "s3cr3t-pw"

# command -> (arguments, expected exit code) of a cheap, real failure in the folder below
FAILURES: dict[str, tuple[list[str], int]] = {
    "bench": (["--quick", "--prepared-dir", "missing"], 3),
    "compare": ([], 1),  # the tracking server does not answer
    "ui": ([], 0),  # an http store is a server already: it says so, without the password
    "retrain": (["-S", "optimizer.lr=-1"], 2),
    "promote": (["1"], 1),
    "history": ([], 1),  # a corrupt retrain report
    "ingest": ([], 1),  # the DVC repository has no ingest stage
    "make-batch": (["b", "--format", "nonsense"], 2),  # argparse's own line
    "explore": ([], 3),  # no champion (the server does not answer), no model file
    "sweep": (["-S", "tracking.uri={uri}"], 3),  # logs the grid, then: no prepared data
    "bench-sweep": (["--project", "missing"], 1),
    "bench-stages": (["--project", "missing"], 1),
    "bench-conformal": (["conformal.alpha=2"], 2),  # a bad value, before any work
    "predict": (["digit.npy"], 3),
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def failures(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Run every command's failure at once (they are independent); return their outcomes."""
    work = tmp_path_factory.mktemp("cli")
    shutil.copytree(REPO / "params", work / "params")
    env = stage_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    uri = f"http://user:{SECRET}@127.0.0.1:{_closed_port()}"
    params["tracking"]["uri"] = uri
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / "reports" / "retrain").mkdir(parents=True)
    (work / "reports" / "retrain" / "job.json").write_text(f'{{"uri": {uri}')
    # a DVC repository whose preprocess stage (which the fast sweep runs first) does nothing
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=work, env=env, check=True)
    (work / "dvc.yaml").write_text("stages:\n  preprocess:\n    cmd: 'true'\n")
    pipe = subprocess.PIPE
    procs = {
        name: subprocess.Popen(
            ["mnist-softmax", name, *(a.format(uri=uri) for a in args)],
            cwd=work,
            env=env,
            stdout=pipe,
            stderr=pipe,
            text=True,
        )
        for name, (args, _) in FAILURES.items()
    }
    outcomes = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        outcomes[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return outcomes


def test_every_command_has_a_failure_case():
    assert set(FAILURES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failure_is_one_masked_line_and_its_code(failures, command):
    proc = failures[command]
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == FAILURES[command][1], shown
    assert SECRET not in proc.stdout + proc.stderr, shown
    assert "Traceback" not in proc.stderr, shown
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    if proc.returncode == 0:
        assert errors == [] and "open http://127.0.0.1:" in proc.stdout, shown
    else:
        assert len(errors) == 1, shown


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_0(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli_main([command, "--help"])
    assert info.value.code == 0
    assert f"mnist-softmax {command}" in capsys.readouterr().out.replace("\n", " ")
