"""What ``--cluster`` accepts (printed and logged through :func:`mnist_softmax.redact.redact_text`).

Kept apart from the runner so that parsing the command line imports nothing heavy.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

LOCAL = re.compile(r"local:([1-9][0-9]*)")


def cluster_address(text: str) -> str:
    """Check a ``--cluster`` value: ``local:N`` or a scheduler address ``scheme://host:port``."""
    if LOCAL.fullmatch(text):
        return text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.scheme or not parts.hostname or port is None:
        raise ValueError(
            f"{text!r} is neither local:N nor a scheduler address like tcp://host:8786"
        )
    return text
