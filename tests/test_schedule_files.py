"""The shipped cron and systemd files are valid and call the real retrain command."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

DEPLOY = REPO / "deploy"
INSTALL_DIR = "/opt/mnist-softmax"


def test_crontab_line_is_well_formed():
    lines = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(lines) == 1
    minute, hour, dom, month, dow, command = lines[0].split(maxsplit=5)
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
    assert (dom, month, dow) == ("*", "*", "*")
    assert "mnist-softmax retrain" in command and ">> logs/retrain.log 2>&1" in command


def test_units_parse_and_point_at_the_console_script():
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(DEPLOY / "mnist-softmax-retrain.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("/.venv/bin/mnist-softmax retrain")
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(DEPLOY / "mnist-softmax-retrain.timer")
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


def verify_units(folder, service_text: str) -> list[str]:
    """Run `systemd-analyze verify` on the units; return its complaints about them."""
    (folder / "mnist-softmax-retrain.service").write_text(service_text)
    timer = (DEPLOY / "mnist-softmax-retrain.timer").read_text()
    (folder / "mnist-softmax-retrain.timer").write_text(timer)
    proc = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(folder.iterdir()))],
        capture_output=True,
        text=True,
    )
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "mnist-softmax" in line]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path):
    """Verify the units as installed for this checkout (systemd checks that ExecStart exists)."""
    text = (DEPLOY / "mnist-softmax-retrain.service").read_text()
    text = text.replace(f"{INSTALL_DIR}/.venv/bin/mnist-softmax", f"{sys.prefix}/bin/mnist-softmax")
    text = text.replace(INSTALL_DIR, str(REPO))
    assert verify_units(tmp_path, text) == []
    # and the check can fail: a typo in a key is reported
    assert verify_units(tmp_path, text.replace("Type=oneshot", "Typ=oneshot"))
