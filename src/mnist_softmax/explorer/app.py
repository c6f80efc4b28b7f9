"""The explorer's web app: one static page and the JSON API it is a thin client of.

Endpoints (every bad request gets HTTP 400 and ``{"error": "<one line>"}``; the server keeps
running whatever it is sent)::

    GET  /api/softmax?z=2.5,1,0.5&t=1&kind=softmax|sparsemax|argmax[&y=0]
    GET  /api/sigmoid?w=1&b=-5                    one feature: sigmoid(w x + b), cut, loss
    GET  /api/regions?theta=<9 numbers>&t=1&kind=softmax[&n=64]   three classes on a plane
    POST /api/regions/step  {"theta": [9 numbers], "lr": 0.5}      one gradient-descent step
    GET  /api/model                                the served model: source, T, class names
    GET  /api/examples?set=test|mistakes           test images / most confident mistakes
    POST /api/predict  {"pixels": [784 ints 0-255]} or {"image": "<PNG data URL>"}
                       [, "t": T] [, "alpha": a]  -> p, label, ..., the prediction set at a

The page and its assets are package data served from ``static/``; nothing comes from another
host (the Content-Security-Policy header says so to the browser too).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mnist_softmax.explorer import inputs, regions
from mnist_softmax.explorer.digit import EXAMPLE_SETS, DigitModel, drawing_to_pixels
from mnist_softmax.explorer.inputs import InputError
from mnist_softmax.explorer.playground import KINDS, explain

log = logging.getLogger(__name__)

MAX_LOGITS = 10  # the playground's sliders offer 2 to 6; the API takes up to 10
GRID_MIN, GRID_MAX = 8, 128  # cells per side of the plane's grid
ALPHA_RANGE = (0.001, 0.999)  # the prediction set's miscoverage, 0 < alpha < 1
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; connect-src 'self'"


def create_app(digit: DigitModel) -> Flask:
    """Return the Flask app serving the page and the API for ``digit``'s model."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = inputs.MAX_BODY_BYTES
    app.json.sort_keys = False

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(InputError)
    def _bad_input(exc: InputError) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        if isinstance(exc, RequestEntityTooLarge):
            message = f"the request body is larger than {inputs.MAX_BODY_BYTES:,} bytes"
            return jsonify(error=message), 400
        return jsonify(error=f"{exc.code} {exc.name}: {request.path}"), exc.code or 500

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> tuple[Response, int]:  # a bug: say so, keep serving
        log.exception("unexpected error on %s", request.path)
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    @app.get("/")
    def index() -> Response:
        return app.send_static_file("index.html")

    @app.get("/api/softmax")
    def softmax_endpoint() -> Response:
        args = _args(("z", "t", "kind", "y"))
        z = inputs.parse_vector(args.get("z"), "z", range(1, MAX_LOGITS + 1))
        t = inputs.parse_temperature(args.get("t", 1))
        kind = inputs.parse_choice(args.get("kind", "softmax"), "kind", KINDS)
        y = inputs.parse_int(args["y"], "y", 0, len(z) - 1) if "y" in args else None
        return jsonify(explain(z, t, kind, y))

    @app.get("/api/sigmoid")
    def sigmoid_endpoint() -> Response:
        args = _args(("w", "b"))
        w = inputs.parse_float(args.get("w", 1), "w", -inputs.LOGIT_LIMIT, inputs.LOGIT_LIMIT)
        b = inputs.parse_float(args.get("b", 0), "b", -inputs.LOGIT_LIMIT, inputs.LOGIT_LIMIT)
        return jsonify(regions.sigmoid_curve(w, b))

    @app.get("/api/regions")
    def regions_endpoint() -> Response:
        args = _args(("theta", "t", "kind", "n"))
        theta = _theta(args.get("theta"))
        t = inputs.parse_temperature(args.get("t", 1))
        kind = inputs.parse_choice(args.get("kind", "softmax"), "kind", KINDS)
        n = inputs.parse_int(args.get("n", 64), "n", GRID_MIN, GRID_MAX)
        return jsonify(regions.plane_regions(theta, t, kind, n))

    @app.post("/api/regions/step")
    def step_endpoint() -> Response:
        body = _body(("theta", "lr"))
        lr = inputs.parse_float(body.get("lr", 0.5), "lr", 1e-4, 100.0)
        return jsonify(regions.gradient_step(_theta(body.get("theta")), lr))

    @app.get("/api/model")
    def model_endpoint() -> Response:
        _args(())
        return jsonify(digit.info())

    @app.get("/api/examples")
    def examples_endpoint() -> Response:
        name = inputs.parse_choice(_args(("set",)).get("set", "test"), "set", EXAMPLE_SETS)
        return jsonify(items=digit.examples.get(name, []))

    @app.post("/api/predict")
    def predict_endpoint() -> Response:
        body = _body(("pixels", "image", "t", "alpha"))
        if ("pixels" in body) == ("image" in body):
            raise InputError('send exactly one of "pixels" (784 integers) or "image" (PNG URL)')
        t = inputs.parse_temperature(body["t"]) if "t" in body else None
        alpha = (
            inputs.parse_float(body["alpha"], "alpha", *ALPHA_RANGE) if "alpha" in body else None
        )
        if "pixels" in body:
            pixels = inputs.parse_pixels(body["pixels"], digit.n_pixels)
        else:
            pixels = _drawing(inputs.decode_png_data_url(body["image"]))
        return jsonify(digit.explain(pixels, t, alpha))

    return app


def _args(allowed: tuple[str, ...]) -> dict[str, str]:
    """Return the query parameters, refusing unknown ones."""
    args = request.args.to_dict()
    inputs.check_keys(args, allowed, "parameter")
    return args


def _body(allowed: tuple[str, ...]) -> dict[str, Any]:
    """Return the JSON object body (at most ``MAX_BODY_BYTES``), refusing unknown fields."""
    body = inputs.parse_json_object(request.get_data(cache=False))
    inputs.check_keys(body, allowed, "field")
    return body


def _theta(value: Any) -> np.ndarray:
    """Return the plane's parameters: (w1, w2, b) for each of its three classes."""
    size = 3 * regions.N_CLASSES
    return inputs.parse_vector(value, "theta", range(size, size + 1), limit=100.0)


def _drawing(image: np.ndarray) -> np.ndarray:
    try:
        return drawing_to_pixels(image)
    except ValueError as exc:  # a blank canvas
        raise InputError(f"image: {exc}") from None
