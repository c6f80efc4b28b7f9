"""Checks of what a browser (or anyone) sends to the explorer's API, at the boundary.

Every value is checked once, here, and a bad one raises :class:`InputError` whose message is the
one-line JSON error the API answers with HTTP 400. The bounds keep every computation finite:
``|z| <= 1000`` and ``T >= 0.001`` give scaled logits of at most 1e6, far from overflow.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_BODY_BYTES = 1_000_000  # request bodies above this are refused (a canvas PNG is ~20 kB)
LOGIT_LIMIT = 1000.0  # |z| <= this for every logit and weight sent
T_MIN, T_MAX = 1e-3, 1e3  # temperatures accepted (the page's slider spans 0.05..20)
MAX_IMAGE_SIDE = 2000  # pixels; a PNG larger than this is refused before it is decoded
_PNG_PREFIX = "data:image/png;base64,"


class InputError(ValueError):
    """A request the API refuses: the message says which field and what is allowed."""


def check_keys(given: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Refuse unknown fields, so a typo (``tt=2``) is an error instead of a silent default."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InputError(f"unknown {where} {unknown[0]!r} (allowed: {', '.join(allowed)})")


def parse_float(text: Any, name: str, lo: float, hi: float) -> float:
    """Return ``text`` as a finite float within ``[lo, hi]`` (JSON numbers or query strings)."""
    if isinstance(text, bool):
        raise InputError(f"{name} must be a number, got {text!r}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {_short(text)}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{name}={_short(text)} is out of range (allowed: {lo:g} to {hi:g})")
    return value


def parse_temperature(text: Any) -> float:
    """Return the temperature ``t``: a finite number ``T_MIN <= t <= T_MAX`` (so ``t > 0``)."""
    return parse_float(text, "t", T_MIN, T_MAX)


def parse_vector(text: Any, name: str, sizes: range, limit: float = LOGIT_LIMIT) -> np.ndarray:
    """Return a comma-separated list (or JSON list) of finite numbers as a float64 vector.

    sizes : the allowed lengths; every value must satisfy ``|v| <= limit``.
    """
    if text is None:
        raise InputError(f"{name} is required: {sizes.start} to {sizes.stop - 1} numbers")
    items = text.split(",") if isinstance(text, str) else text
    if not isinstance(items, list | tuple) or len(items) not in sizes:
        raise InputError(
            f"{name} must hold {sizes.start} to {sizes.stop - 1} numbers, got {_short(text)}"
        )
    return np.array([parse_float(v, f"{name}[{i}]", -limit, limit) for i, v in enumerate(items)])


def parse_int(text: Any, name: str, lo: int, hi: int) -> int:
    """Return ``text`` as an integer in ``lo .. hi`` (``lo >= 0``)."""
    if isinstance(text, bool) or not str(text).strip().isdigit() or not lo <= int(text) <= hi:
        raise InputError(f"{name}={_short(text)} must be an integer from {lo} to {hi}")
    return int(text)


def parse_choice(text: Any, name: str, choices: tuple[str, ...]) -> str:
    """Return ``text`` when it is one of ``choices``."""
    if text not in choices:
        raise InputError(f"{name}={_short(text)} is unknown (allowed: {' | '.join(choices)})")
    return str(text)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Return a request body as a JSON object; NaN and Infinity literals are refused."""

    def refuse(constant: str) -> None:
        raise InputError(f"the body holds {constant}, which is not a JSON number")

    try:
        data = json.loads(body, parse_constant=refuse)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON ({exc.args[0].splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError('the body must be a JSON object such as {"pixels": [...]}')
    return data


def parse_pixels(values: Any, n_pixels: int) -> np.ndarray:
    """Return ``n_pixels`` integers 0..255 (row-major, light ink on dark) as a uint8 row."""
    if not isinstance(values, list) or len(values) != n_pixels:
        got = f"{len(values)} values" if isinstance(values, list) else _short(values)
        raise InputError(f"pixels must be a list of {n_pixels} integers 0-255, got {got}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise InputError(f"pixels[{i}]={_short(v)} is not an integer from 0 to 255")
    return np.array(values, dtype=np.uint8)


def decode_png_data_url(url: Any) -> np.ndarray:
    """Return the pixels of a ``data:image/png;base64,...`` URL as an RGBA array (H, W, 4)."""
    if not isinstance(url, str) or not url.startswith(_PNG_PREFIX):
        raise InputError(f"image must be a data URL starting with {_PNG_PREFIX!r}")
    try:
        blob = base64.b64decode(url.removeprefix(_PNG_PREFIX), validate=True)
        with Image.open(io.BytesIO(blob), formats=["PNG"]) as image:
            if max(image.size) > MAX_IMAGE_SIDE:
                raise InputError(
                    f"image is {image.size[0]}x{image.size[1]} pixels (allowed: at most "
                    f"{MAX_IMAGE_SIDE} a side)"
                )
            return np.asarray(image.convert("RGBA"))
    except (binascii.Error, UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"image is not a readable PNG ({_short(str(exc))})") from None


def _short(value: Any, limit: int = 40) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters, so an error stays one short line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
