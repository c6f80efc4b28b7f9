"""Where MLflow runs go: the tracking URI and the local artifact folder, without mlflow.

Kept apart from the modules that import mlflow so ``mnist-softmax ui`` and ``compare`` find
the store without paying for mlflow's multi-second import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mnist_softmax.config import TrackingConfig

STORE_DIR = "mlflow"  # <repo>/mlflow: mlflow.db + artifacts/ (never an __init__.py there)
# A server whose artifacts live in S3 makes MLflow 3 clients download them (and upload files
# >= 500 MB) straight from/to the object store by presigned URL. Off by default here: every byte
# goes through the tracking server, so a client needs to reach that server only
# (scripts/tracking-server's object store listens on the server's loopback).
DIRECT_TRANSFERS = (
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD",
)


@dataclass(frozen=True)
class Store:
    """Where runs go: a tracking URI and, for a local sqlite store, the artifact folder."""

    uri: str
    artifact_location: str | None


def repo_root() -> Path:
    """Return the project root: ``$DVC_ROOT`` when DVC runs the stage, else the cwd.

    Queued experiments run in ``<repo>/.dvc/tmp/exps/tmpXXXX``; DVC still sets ``DVC_ROOT`` to
    the repo (checked with dvc 3), so every experiment writes to the one shared store.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def resolve_store(tracking: TrackingConfig) -> Store:
    """Pick the tracking URI: ``$MLFLOW_TRACKING_URI`` > ``tracking.uri`` > repo sqlite.

    Credentials in the URI (``http://user:secret@host``) move to MLflow's own variables
    (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, which it sends as basic auth) and the URI
    keeps only the host: nothing MLflow prints or stores ("View run at ...") carries them.
    A server's artifact transfers stay proxied unless the environment says otherwise
    (``DIRECT_TRANSFERS``).
    """
    uri = strip_credentials(os.environ.get("MLFLOW_TRACKING_URI") or tracking.uri)
    if not uri:
        uri = f"sqlite:///{repo_root() / STORE_DIR / 'mlflow.db'}"
    if not uri.startswith("sqlite:///"):
        for name in DIRECT_TRANSFERS:
            os.environ.setdefault(name, "false")
        return Store(uri=uri, artifact_location=None)  # a server or file store decides
    db = Path(uri.removeprefix("sqlite:///"))
    return Store(uri=uri, artifact_location=str(db.parent / "artifacts"))


def strip_credentials(uri: str | None) -> str | None:
    """Return ``uri`` without userinfo, exporting it as MLflow's basic-auth variables."""
    if not uri or "@" not in uri or not uri.startswith(("http://", "https://")):
        return uri
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
