"""Deskewing: shear each digit upright and move its centre of mass to the image's centre.

A linear model reads pixels, so a slanted 1 and an upright 1 are different patterns to it, and
its ten weight templates must spend capacity on every slant. Deskewing removes the slant first
(LeCun et al. list it for linear classifiers on MNIST). From an image's intensity moments, its
centre of mass (cy, cx) and skew ``alpha = cov(y, x) / var(y)``, the output pixel at (y, x) is
the input at (y + cy - oy, x + alpha (y - oy) + cx - ox), with (oy, ox) = (height/2, width/2),
interpolated bilinearly, zero outside the image: the classic affine deskew (shear about the
centre of mass, then centring). Centring matters as much as the shear: without it, test accuracy
reaches 0.949 instead of 0.957 with the shipped optimizer config.

Bilinear interpolation is separable here: every pixel of an image moves by the same rows
(``cy - oy``), and every pixel of an output row by the same columns, so a vertical pass (one
blend of two row-shifted copies) and a horizontal pass (one gather per row) do it for all images
at once: about 0.5 s for MNIST's 70,000 images on one core, against 5.6 s for a per-image
``scipy.ndimage.affine_transform`` loop. The tests check both agree (scipy with
``mode="grid-constant"``: its ``"constant"`` drops a sample that lies even partly beyond the
edge, where this module blends with the zero outside).
"""

from __future__ import annotations

import numpy as np

CHUNK = 512  # images per step: temporaries of ~4 MB stay in cache (8192: 0.77 s, 512: 0.46 s)
_MIN_VARIANCE = 1e-2  # an image with (almost) no vertical extent is not sheared


def deskew(X: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Return the deskewed images as float32, shape (n_samples, height * width).

    X : pixels of shape (n_samples, height * width) or (n_samples, height, width), any dtype
    """
    X = np.asarray(X)
    height, width = image_shape
    images = X.reshape(len(X), height, width)
    out = np.empty((len(X), height * width), np.float32)
    for start in range(0, len(X), CHUNK):
        chunk = images[start : start + CHUNK].astype(np.float32)
        alpha, dy, dx = moments(chunk)
        centred = _shift_rows(chunk, dy)
        shift = alpha[:, None] * (np.arange(height) - height / 2) + dx[:, None]
        out[start : start + CHUNK] = _shift_columns(centred, shift).reshape(len(chunk), -1)
    return out


def moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each image's skew and how far its centre of mass lies from the image's centre.

    images : shape (n, height, width). Returns (alpha, dy, dx), each of shape (n,); a blank
    image gets zeros (nothing to move).
    """
    _, height, width = images.shape
    ys = np.arange(height, dtype=np.float64)
    xs = np.arange(width, dtype=np.float64)
    row_mass = images.sum(axis=2, dtype=np.float64)  # (n, height)
    mass = row_mass.sum(axis=1)
    blank = mass <= 0
    safe = np.where(blank, 1.0, mass)
    cy = row_mass @ ys / safe
    cx = images.sum(axis=1, dtype=np.float64) @ xs / safe
    var_y = row_mass @ (ys**2) / safe - cy**2
    cov_xy = (images @ xs.astype(np.float32)).astype(np.float64) @ ys / safe - cx * cy
    flat = var_y < _MIN_VARIANCE
    alpha = np.where(flat, 0.0, cov_xy / np.where(flat, 1.0, var_y))
    dy = np.where(blank, 0.0, cy - height / 2)
    dx = np.where(blank, 0.0, cx - width / 2)
    return alpha, dy, dx


def _shift_rows(images: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Return out[y] = images[y + dy] per image, linearly interpolated, zero outside."""
    height = images.shape[1]
    whole = np.floor(dy)
    frac = (dy - whole).astype(np.float32)[:, None, None]
    rows = whole.astype(np.int32)[:, None] + np.arange(1, height + 2, dtype=np.int32)
    samples = _gather(np.pad(images, ((0, 0), (1, 1), (0, 0))), rows, axis=1)
    top, bottom = samples[:, :-1], samples[:, 1:]
    return top + frac * (bottom - top)


def _shift_columns(images: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Return out[y, x] = images[y, x + shift[y]] per image, linearly interpolated.

    One gather of width + 1 columns per row gives both the left and the right samples.
    """
    whole = np.floor(shift)
    frac = (shift - whole).astype(np.float32)[:, :, None]
    _, _, width = images.shape
    columns = whole.astype(np.int32)[:, :, None] + np.arange(1, width + 2, dtype=np.int32)
    samples = _gather(np.pad(images, ((0, 0), (0, 0), (1, 1))), columns, axis=2)
    left, right = samples[:, :, :-1], samples[:, :, 1:]
    return left + frac * (right - left)


def _gather(padded: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """Take ``padded`` along ``axis`` (1: rows, 2: columns) at ``index``, one index set per
    image (axis 1, index (n, k)) or per row (axis 2, index (n, h, k)).

    ``padded`` has one zero row or column on each side of that axis; indices beyond them are
    clipped onto them, so whatever comes from outside the image is zero. A flat ``take`` on
    int32 offsets: far cheaper than fancy indexing with broadcast index arrays.
    """
    n, height, width = padded.shape
    size = padded.shape[axis]
    index = np.clip(index, 0, size - 1)
    if axis == 1:  # whole rows: gather row numbers, then every column of them
        offsets = index + (np.arange(n, dtype=np.int32) * height)[:, None]
        return padded.reshape(n * height, width).take(offsets, axis=0)
    offsets = index + (np.arange(n * height, dtype=np.int32) * width).reshape(n, height, 1)
    return padded.ravel().take(offsets)
