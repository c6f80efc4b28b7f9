"""MNIST-style normalisation: photos and drawings of any size become digits the model reads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_softmax.data.digit_image import normalize_digit


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist["test_images"][:200]


def _render_like_a_scan(digit: np.ndarray, scale: int, offset: tuple[int, int]) -> np.ndarray:
    """Blow a 28x28 digit up, put it off-centre on a bigger sheet, dark ink on white paper."""
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    sheet = np.zeros((28 * scale + 3 * offset[0], 28 * scale + 2 * offset[1]), dtype=np.uint8)
    sheet[offset[0] : offset[0] + 28 * scale, offset[1] : offset[1] + 28 * scale] = np.asarray(big)
    return 255 - sheet


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_an_mnist_digit_is_nearly_a_fixed_point(digits):
    corr = [_corr(normalize_digit(d), d) for d in digits[:50]]
    assert np.median(corr) > 0.95


def test_large_offset_inverted_renders_come_back_as_the_digit(digits):
    corr = [
        _corr(normalize_digit(_render_like_a_scan(d, scale, (17, 41))), d)
        for d in digits[:50]
        for scale in (3, 7)
    ]
    assert np.median(corr) > 0.9 and min(corr) > 0.5


def test_colour_with_alpha_and_output_format(digits):
    grey = _render_like_a_scan(digits[0], 4, (5, 5))
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    out = normalize_digit(rgba)
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() == 255
    np.testing.assert_array_equal(out, normalize_digit(grey))
    rows, cols = np.nonzero(out)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # the 20-px box


def test_blank_image_is_refused():
    with pytest.raises(ValueError, match="no ink"):
        normalize_digit(np.full((40, 30), 255, dtype=np.uint8))
