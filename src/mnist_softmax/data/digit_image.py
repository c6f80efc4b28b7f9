"""MNIST's own normalisation for a digit from anywhere: a photo, a scan, a canvas drawing.

LeCun's MNIST digits were made so: the ink's bounding box scaled (aspect kept, anti-aliased) to
fit 20x20 pixels, then placed in a 28x28 field so that the centre of mass of the ink sits at the
centre. A model trained on MNIST only reads digits prepared the same way, so ``predict`` and the
explorer's canvas both go through :func:`normalize_digit`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

FIELD = 28  # output side, pixels
BOX = 20  # the ink's longer side after scaling, pixels
_INK_FRACTION = 0.1  # a pixel is ink when brighter than this share of the brightest pixel


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return a float64 grey image (H, W) in 0..255 from grey (H, W) or RGB(A) (H, W, 3|4)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3]
        if image.shape[2] == 4:  # transparent pixels count as white paper
            alpha = image[..., 3:4] / 255.0
            rgb = rgb * alpha + 255.0 * (1 - alpha)
        image = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as PIL's "L"
    if image.ndim != 2:
        raise ValueError(f"expected a grey or RGB(A) image, got shape {image.shape}")
    return image


def ink_is_dark(grey: np.ndarray) -> bool:
    """Guess whether the ink is darker than the paper from the border (mostly paper)."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border)) > 127.5


def normalize_digit(image: np.ndarray) -> np.ndarray:
    """Return the MNIST-style 28x28 uint8 version of a digit image (light ink on black).

    Parameters
    ----------
    image : ndarray of shape (H, W) grey or (H, W, 3|4) colour, values 0..255, any size;
        dark ink on light paper or light on dark (detected from the border).

    Raises
    ------
    ValueError
        When the image holds no ink at all (blank or uniform).
    """
    grey = to_grey(image)
    ink = 255.0 - grey if ink_is_dark(grey) else grey
    ink -= np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]))  # paper -> 0
    ink = np.clip(ink, 0.0, 255.0)
    peak = float(ink.max())
    if peak <= 0:
        raise ValueError("the image holds no ink (it is blank or uniform)")
    rows, cols = np.nonzero(ink > _INK_FRACTION * peak)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] * (255.0 / peak)
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    small = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    )
    small = np.clip(small, 0.0, 255.0)
    return _centre_by_mass(small)


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Paste ``patch`` into a FIELD x FIELD canvas with its centre of mass at the centre."""
    cy, cx = ndimage.center_of_mass(patch)
    top = round(FIELD / 2 - cy)
    left = round(FIELD / 2 - cx)
    h, w = patch.shape
    top = min(max(top, 0), FIELD - h)  # never push ink off the field
    left = min(max(left, 0), FIELD - w)
    field = np.zeros((FIELD, FIELD))
    field[top : top + h, left : left + w] = patch
    return np.rint(field).astype(np.uint8)
