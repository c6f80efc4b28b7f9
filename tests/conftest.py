"""Shared fixtures: the real MNIST files served as mirrors, composed configs, a project copy."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import resource
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_fixtures import logged_runs, tracking_store  # noqa: F401  (shared MLflow store)

from mnist_softmax.config import Config, compose, config_from_container
from mnist_softmax.devtools.project_copy import PROJECT_FILES  # what a clean clone holds

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("SHARED_MNIST", REPO.parent / "shared" / "mnist"))
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    """The folder with the four real MNIST .gz files (../shared/mnist)."""
    if not (SHARED_MNIST / "train-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"real MNIST files not found in {SHARED_MNIST}: set $SHARED_MNIST")
    return SHARED_MNIST


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path, handler: type = _QuietHandler) -> tuple[str, http.server.HTTPServer]:
    """Serve ``directory`` on a free loopback port in a thread; return (base URL, server)."""
    factory = functools.partial(handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


@pytest.fixture(scope="session")
def mnist_raw(tmp_path_factory, shared_mnist: Path) -> Path:
    """The decompressed IDX files, as ``dvc repro fetch`` leaves them in data/raw/ (one copy)."""
    import gzip

    folder = tmp_path_factory.mktemp("raw")
    for gz in shared_mnist.glob("*-ubyte.gz"):
        (folder / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_raw: Path) -> dict[str, object]:
    """The real MNIST arrays, read once per session from :func:`mnist_raw` by the project's IDX
    reader: ``train_images``/``test_images`` (n, 28, 28) uint8, ``train_labels``/``test_labels``
    (n,) uint8. Read-only: copy before changing them."""
    from mnist_softmax.data.idx import read_idx

    names = {"train": "train", "test": "t10k"}
    arrays = {}
    for part, prefix in names.items():
        arrays[f"{part}_images"] = read_idx(mnist_raw / f"{prefix}-images-idx3-ubyte")
        arrays[f"{part}_labels"] = read_idx(mnist_raw / f"{prefix}-labels-idx1-ubyte")
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


@pytest.fixture
def http_mirror(shared_mnist: Path) -> Iterator[str]:
    """The real MNIST files on a loopback HTTP mirror."""
    url, server = serve(shared_mnist)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def file_mirror(shared_mnist: Path) -> str:
    return shared_mnist.as_uri()


@pytest.fixture
def cfg() -> Config:
    """The project's default configuration, composed by Hydra from params/."""
    return config_from_container(compose(REPO / "params"))


def stage_env(mirror: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for subprocesses: the test's venv first on PATH, no analytics, no DVC exp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
        GIT_AUTHOR_NAME="t",
        GIT_COMMITTER_NAME="t",
    )
    env.update(GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_EMAIL="t@example.com")
    if mirror:
        env["DATA_MIRROR"] = mirror
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: int = 600):
    """Run a command, returning the CompletedProcess; on unexpected failure show its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_project(dest: Path, env: dict[str, str], epochs: int | None = None) -> Path:
    """Create a git repository at ``dest`` holding a copy of this project.

    ``epochs`` shrinks SGD training (and the ECE bootstrap) for tests about plumbing, not
    accuracy. The project's only mirror is an offline placeholder, so its data comes from
    ``$DATA_MIRROR`` alone: a test that gives it a corrupt mirror cannot be rescued by the real
    https mirrors when the machine happens to be online.
    """
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    _offline_mirrors(dest / "params/data/mnist.yaml")
    if epochs is not None:
        _set_key(dest / "params/optimizer/sgd.yaml", "epochs", epochs)
        _set_key(dest / "params/evaluation/default.yaml", "bootstrap_samples", 50)
    run([sys.executable, "pipeline/compose.py"], dest, env)
    (dest / "mlflow").mkdir()
    (dest / ".gitignore").write_text("mlflow/\n")
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "project"], dest, env)
    return dest


OFFLINE_MIRROR = "file:///nonexistent/offline-test-mirror"


def _offline_mirrors(file: Path) -> None:
    """Replace the configured mirrors of a data config by one that never answers."""
    text, count = re.subn(
        r"(?m)^mirrors:(.*)\n(?:  - .*\n)+",
        rf"mirrors:\1\n  - {OFFLINE_MIRROR}\n",
        file.read_text(),
    )
    assert count == 1, f"no mirrors list in {file}"
    file.write_text(text)


def _set_key(file: Path, key: str, value: object) -> None:
    """Change one top-level ``key: value`` line of a params/ file, keeping its comment."""
    text, count = re.subn(rf"(?m)^{key}: *[^ #]+", f"{key}: {value}", file.read_text())
    assert count == 1, f"{key} not in {file}"
    file.write_text(text)


def make_project(parent: Path, mirror: str) -> tuple[Path, dict[str, str]]:
    """Create a fresh git + DVC repository holding a copy of this project; return (path, env)."""
    env = stage_env(mirror)
    return copy_project(parent / "project", env), env


@pytest.fixture
def project(tmp_path: Path, file_mirror: str) -> tuple[Path, dict[str, str]]:
    """A fresh git + DVC repository holding a copy of this project; returns (path, env)."""
    return make_project(tmp_path, file_mirror)


def limited_python(
    code: str, fsize: int | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, optionally under RLIMIT_FSIZE (``fsize`` bytes).

    RLIMIT_FSIZE is a real full disk for that one process: a write past it fails with EFBIG
    (Python ignores SIGXFSZ). A PipelineError ends it as a stage would: one line, its code.
    """
    wrapper = textwrap.dedent(
        f"""
        import sys
        from mnist_softmax.errors import PipelineError
        try:
            exec(compile({code!r}, "<test>", "exec"))
        except PipelineError as exc:
            print(f"{{type(exc).__name__}}: {{exc}}", file=sys.stderr)
            sys.exit(exc.exit_code)
        """
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-c", wrapper],
        preexec_fn=limit if fsize else None,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """Make ``folder`` unwritable for this test, even for root (``chattr +i``, immutable)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.fixture(scope="session")
def team_server() -> Iterator[object]:
    """One PostgreSQL-backed MLflow server (scripts/tracking-server) for the whole session."""
    from team_server import start_team_server  # imports conftest: load it lazily

    yield from start_team_server()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's headless chromium driven by Playwright (one per session: it costs ~1 s).

    `make test` installs chromium when missing; without it the browser tests fail, never skip.
    """
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


_SCREENSHOTS: list[Path] = []


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory) -> Path:
    """Where browser tests save screenshots for a person to look at: outside the work tree (a
    session temp folder pytest keeps for its last three runs), named at the end of the run."""
    folder = tmp_path_factory.mktemp("screenshots", numbered=True)
    _SCREENSHOTS.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter) -> None:
    """Say where this run's screenshots are."""
    for folder in _SCREENSHOTS:
        terminalreporter.write_line(f"screenshots: {folder}")


@pytest.fixture(scope="module")
def digits() -> tuple[object, object, object]:
    """sklearn's 8x8 digits as uint8 images: 1400 train and 397 validation splits + scaler."""
    import numpy as np
    from sklearn.datasets import load_digits

    from mnist_softmax.data.scaler import Scaler
    from mnist_softmax.data.splits import Split

    X, y = load_digits(return_X_y=True)
    X = (X * 15).astype(np.uint8)
    train, val = Split(X[:1400], y[:1400]), Split(X[1400:], y[1400:])
    return train, val, Scaler.fit(train.X, "standardize", 25.5)
