"""The trained model behind the digit panel: probabilities, weight template, pixel contributions.

A logit is a sum over pixels, ``z_k = sum_i x_i W[i, k] + b_k`` with ``x`` the scaled pixels,
so ``x * W[:, k]`` shows which pixels pushed the predicted class up (positive) or down. The
examples (a sample of the test split and its most confident mistakes) are picked once at start.
The prediction set comes from the model's own conformal predictor, at any alpha the page asks
for, always on the probabilities at the fitted T (the only T its guarantee holds for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.data.splits import Split
from mnist_softmax.evaluation.conformal import Conformal, set_names
from mnist_softmax.evaluation.image_grids import most_confident_mistakes
from mnist_softmax.explorer.playground import probabilities
from mnist_softmax.model.model_file import SoftmaxModel
from mnist_softmax.model.numerics import predict_logits

N_EXAMPLES = 24  # test images and mistakes offered to the page
EXAMPLE_SETS = ("test", "mistakes")


@dataclass(frozen=True)
class DigitModel:
    """The served model, its fitted temperature, where it came from, and example images.

    ``conformal`` makes the prediction sets (None: the model has none, the page says so).
    """

    model: SoftmaxModel
    temperature: float
    source: str
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    conformal: Conformal | None = None

    @property
    def n_pixels(self) -> int:
        return int(self.model.W.shape[0])

    def info(self) -> dict[str, Any]:
        """Return what the page shows about the model (the ``/api/model`` JSON)."""
        return {
            "source": self.source,
            "temperature": self.temperature,
            "class_names": [str(c) for c in self.model.class_names],
            "image_shape": [int(s) for s in self.model.image_shape],
            "examples": {name: len(self.examples.get(name, [])) for name in EXAMPLE_SETS},
            "conformal": None if self.conformal is None else {
                "method": self.conformal.method, "alpha": self.conformal.alpha,
                "mondrian": self.conformal.mondrian},
        }  # fmt: skip

    def explain(
        self, pixels: np.ndarray, temperature: float | None, alpha: float | None = None
    ) -> dict[str, Any]:
        """Return probabilities, prediction, template, contributions and set for one image.

        ``seen`` is the image as the weights read it (deskewed, if the model deskews): the
        contributions are per pixel of ``seen``, not of the raw ``pixels``.

        pixels : ndarray of shape (n_pixels,), uint8, MNIST-style (light ink on dark);
        temperature : None for the model's fitted one; alpha : None for the conformal one.
        """
        t = self.temperature if temperature is None else temperature
        x = self.model.features(pixels[None, :])
        z = predict_logits(x, self.model.W, self.model.b)  # SoftmaxModel.logits, x kept
        p = probabilities(z, t, self.model.output)[0]  # softmax or sparsemax, as trained
        k = int(p.argmax())
        template = self.model.W[:, k].astype(np.float64)
        contribution = x[0].astype(np.float64) * template
        return {
            "p": p.tolist(),
            "label": str(self.model.class_names[k]),
            "index": k,
            "t": t,
            "logits": z[0].astype(np.float64).tolist(),
            "pixels": pixels.tolist(),
            "seen": self.model.scaler.pixels(pixels[None, :])[0].round(2).tolist(),
            "template": template.round(5).tolist(),
            "contribution": contribution.round(5).tolist(),
            "bias": float(self.model.b[k]),
            **self._prediction_set(z, alpha),
        }

    def _prediction_set(self, z: np.ndarray, alpha: float | None) -> dict[str, Any]:
        """``set`` (class names, most probable first) and its ``alpha``; None without sets."""
        if self.conformal is None:
            return {"set": None, "alpha": None}
        a = self.conformal.alpha if alpha is None else alpha
        p = probabilities(z, self.temperature, self.model.output)  # at the fitted T
        names = [str(c) for c in self.model.class_names]
        return {"set": set_names(self.conformal.sets(p, a), p, names)[0], "alpha": a}


def drawing_to_pixels(image: np.ndarray) -> np.ndarray:
    """Return a drawing (any size, grey or RGB(A)) as MNIST-style pixels, shape (784,), uint8.

    Raises ValueError when the drawing holds no ink.
    """
    return normalize_digit(image).ravel()


def pick_examples(model: SoftmaxModel, test: Split, seed: int = 0) -> dict[str, list[dict]]:
    """Return a fixed random sample of test images and the most confident mistakes.

    Each item is ``{"pixels": [...], "label": true class name, "index": row in the test split}``.
    """
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(test), size=min(N_EXAMPLES, len(test)), replace=False)
    mistakes = most_confident_mistakes(model.predict_proba(test.X), test.y, N_EXAMPLES)

    def items(rows: np.ndarray) -> list[dict[str, Any]]:
        names = model.class_names
        return [
            {"pixels": test.X[i].tolist(), "label": str(names[test.y[i]]), "index": int(i)}
            for i in rows
        ]

    return {"test": items(sample), "mistakes": items(mistakes)}
