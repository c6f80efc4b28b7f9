"""Keep credentials out of everything the project records: params, artifacts, tags, logs.

A tracking URI may carry a password (``http://user:secret@host``) and a config may hold a
key named like ``password``/``token``/``secret``. Every value that leaves the process (MLflow
params, tags, the logged ``params.yaml`` and ``dvc.lock``, error messages and log lines) goes
through one of these functions; :func:`install_log_redaction` covers every logger at once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# key names whose values are secrets wherever they appear (params, YAML, key=value text)
SECRET_KEY = re.compile(r"(?i)(passw(or)?d|passwd|token|secret|api[_-]?key|credential)")
# scheme://user:password@host or scheme://token@host: the userinfo part of any URL
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"]+)@")
# `key: value` (YAML) or `key=value` (overrides, env), for secret-looking keys
_KEY_VALUE = re.compile(
    r"(?P<key>[\w.-]*(?:passw(?:or)?d|passwd|token|secret|api[_-]?key|credential)[\w.-]*)"
    r"(?P<sep>\s*[:=]\s*)(?P<value>[^\s,;'\"]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """Mask URL userinfo and the values of secret-looking keys in free text."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)


def redact_value(key: str, value: Any) -> str:
    """Return ``value`` as text, masked whole when ``key`` names a secret."""
    if SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return MASK
    return redact_text(str(value))


def redact_mapping(values: dict[str, Any]) -> dict[str, str]:
    """Redact every value of a flat ``{key: value}`` mapping (params, tags)."""
    return {key: redact_value(key, value) for key, value in values.items()}


class _RedactingFilter(logging.Filter):
    """Rewrite a record's message, already formatted, with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter()


def install_log_redaction() -> None:
    """Mask secrets in every log record, whatever logger (ours, mlflow's, dvc's) made it.

    A record factory sees every record at creation, so no handler added later escapes it.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacting", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    make_record.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
