"""The explorer's JSON API through Flask's test client: each endpoint, and each bad request."""

from __future__ import annotations

import base64
import io
import json
import math

import explorer_fixtures
import numpy as np
import pytest
from PIL import Image

from mnist_softmax.data.deskew import deskew
from mnist_softmax.data.digit_image import normalize_digit
from mnist_softmax.evaluation.conformal import set_names
from mnist_softmax.evaluation.conformal_file import load_conformal
from mnist_softmax.explorer.inputs import MAX_BODY_BYTES
from mnist_softmax.explorer.regions import line_data, plane_data, plane_regions, split_theta
from mnist_softmax.model.model_file import load_model
from mnist_softmax.model.numerics import nll, softmax, sparsemax

trained_files = explorer_fixtures.trained_files
explorer_app = explorer_fixtures.explorer_app

THETA = "1,0,0,0,1,0,-1,-1,0"


@pytest.fixture(scope="module")
def client(explorer_app):
    return explorer_app.test_client()


@pytest.fixture(scope="module")
def model(trained_files):
    return load_model(trained_files.model)


def ok(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def png_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# ------------------------------------------------------------------------- page and assets


def test_page_and_assets_are_served_from_the_project_only(client):
    page = client.get("/")
    assert page.status_code == 200 and b'<canvas id="dg-canvas"' in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset, kind in (("/static/explorer.js", "javascript"), ("/static/explorer.css", "css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.content_type, asset
        text = response.get_data(as_text=True)
        assert text and "fonts.googleapis" not in text and "cdn" not in text.lower()
    assert client.get("/static/missing.js").status_code == 404  # the check above can fail
    html = page.get_data(as_text=True)
    assert 'src="http' not in html and 'href="http' not in html


def test_unknown_path_and_wrong_method_answer_json(client):
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "404" in missing.get_json()["error"]
    wrong = client.get("/api/predict")
    assert wrong.status_code == 405 and "error" in wrong.get_json()


# ------------------------------------------------------------------------- /api/softmax


def test_softmax_reproduces_the_articles_example_with_its_steps(client):
    r = ok(client.get("/api/softmax?z=2.5,1,0.5&t=1&kind=softmax"))
    np.testing.assert_allclose(r["p"], [0.736, 0.164, 0.100], atol=5e-4)
    np.testing.assert_array_equal(r["p"], softmax(np.array([[2.5, 1.0, 0.5]]))[0])
    steps = r["steps"]
    assert steps["shifted"] == [0.0, -1.5, -2.0] and steps["exp"][0] == 1.0
    np.testing.assert_allclose(np.array(steps["exp"]) / steps["sum"], r["p"], rtol=1e-12)
    assert "loss" not in r and "sigmoid" not in r


def test_temperature_divides_the_logits(client):
    z = np.array([[2.5, 1.0, 0.5]])
    for t in (0.05, 0.5, 3.0, 20.0):
        r = ok(client.get(f"/api/softmax?z=2.5,1,0.5&t={t}"))
        np.testing.assert_allclose(r["p"], softmax(z, t)[0], rtol=1e-12)
    cold, hot = (ok(client.get(f"/api/softmax?z=2.5,1,0.5&t={t}"))["p"] for t in (0.1, 20))
    assert cold[0] > 0.999 and max(hot) - min(hot) < 0.04  # argmax-like vs nearly uniform


def test_loss_and_gradient_of_a_true_class(client):
    r = ok(client.get("/api/softmax?z=2.5,1,0.5&y=1"))
    assert r["loss"] == pytest.approx(-math.log(r["p"][1]), rel=1e-12)
    np.testing.assert_allclose(r["grad"], np.array(r["p"]) - [0, 1, 0], rtol=1e-12)
    far = ok(client.get("/api/softmax?z=1000,-1000&t=0.001&y=1"))
    assert far["p"][1] == 0.0 and far["loss"] == pytest.approx(2e6)  # log-softmax: finite


def test_two_classes_sigmoid_of_the_difference_equals_softmax(client):
    for z, t in (("3,1", 1), ("-2,0.5", 0.3), ("0,0", 4)):
        r = ok(client.get(f"/api/softmax?z={z}&t={t}"))
        assert r["sigmoid"] == pytest.approx(r["p"][0], rel=1e-12)


def test_sparsemax_gives_exact_zeros(client):
    r = ok(client.get("/api/softmax?z=1,0.8,0.1&kind=sparsemax&y=2"))
    np.testing.assert_allclose(r["p"], [0.6, 0.4, 0.0], atol=1e-12)
    assert r["p"][2] == 0.0 and r["steps"]["support"] == [True, True, False]
    assert r["steps"]["tau"] == pytest.approx(0.4)
    assert r["loss"] is None and r["grad"][2] == -1.0  # -log 0 is infinite: null, not a crash
    np.testing.assert_array_equal(r["p"], sparsemax(np.array([[1, 0.8, 0.1]]))[0])


def test_argmax_is_one_hot_and_ties_share(client):
    assert ok(client.get("/api/softmax?z=2.5,1,0.5&kind=argmax"))["p"] == [1.0, 0.0, 0.0]
    assert ok(client.get("/api/softmax?z=2,2,0,-1&kind=argmax"))["p"] == [0.5, 0.5, 0.0, 0.0]


BAD_SOFTMAX = [
    ("t=1", "z is required"),
    ("z=", "z[0] must be a number"),
    ("z=a,b", "z[0] must be a number"),
    ("z=nan,1", "z[0]='nan' is out of range"),
    ("z=inf,1", "out of range"),
    ("z=1,1e4", "z[1]='1e4' is out of range"),
    ("z=" + ",".join(["1"] * 11), "z must hold 1 to 10 numbers"),
    ("z=1,2&t=0", "t='0' is out of range"),
    ("z=1,2&t=-1", "out of range"),
    ("z=1,2&t=abc", "t must be a number"),
    ("z=1,2&t=nan", "out of range"),
    ("z=1,2&kind=softermax", "kind='softermax' is unknown"),
    ("z=1,2,3&y=3", "y='3' must be an integer from 0 to 2"),
    ("z=1,2,3&y=-1", "must be an integer"),
    ("z=1,2,3&y=1.5", "must be an integer"),
    ("z=1,2&tt=2", "unknown parameter 'tt'"),
]


@pytest.mark.parametrize(("query", "message"), BAD_SOFTMAX)
def test_softmax_bad_requests_get_400_and_one_line(client, query, message):
    response = client.get(f"/api/softmax?{query}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error and "\n" not in error


# ------------------------------------------------------------------------- decision regions


def test_sigmoid_curve_cut_and_loss(client):
    r = ok(client.get("/api/sigmoid?w=2&b=-10"))
    assert r["cut"] == pytest.approx(5.0)
    assert r["p"][r["x"].index(5.0)] == pytest.approx(0.5)
    x, y = line_data().X[:, 0], line_data().y
    expected = -np.mean(y * np.log(1 / (1 + np.exp(-(2 * x - 10)))) +
                        (1 - y) * np.log(1 - 1 / (1 + np.exp(-(2 * x - 10)))))  # fmt: skip
    assert r["loss"] == pytest.approx(expected, rel=1e-9)
    assert ok(client.get("/api/sigmoid?w=0&b=1"))["cut"] is None
    for query in ("w=x", "w=1&b=inf", "w=1&c=2"):
        assert client.get(f"/api/sigmoid?{query}").status_code == 400


def test_regions_colour_by_argmax_and_sparsemax_shows_zero_regions(client):
    soft = ok(client.get(f"/api/regions?theta={THETA}&n=16"))
    assert len(soft["cls"]) == len(soft["top"]) == 256 and set(soft["cls"]) == {0, 1, 2}
    assert soft["zero_share"] == [0.0, 0.0, 0.0] and not any(soft["zeros"])
    sparse = ok(client.get(f"/api/regions?theta={THETA}&n=16&kind=sparsemax"))
    assert sparse["cls"] == soft["cls"] and min(sparse["zero_share"]) > 0.1
    hot = ok(client.get(f"/api/regions?theta={THETA}&n=16&t=5"))
    assert np.mean(hot["top"]) < np.mean(soft["top"])  # higher T, paler shading
    data = plane_data()
    W, b = split_theta(np.array(THETA.split(","), dtype=float))
    assert soft["loss"] == pytest.approx(nll(data.X @ W + b, data.y))


@pytest.mark.parametrize(
    "query",
    ["theta=1,2,3", f"theta={THETA},1", f"theta={THETA}&n=7", f"theta={THETA}&n=129",
     f"theta={THETA}&n=abc", f"theta={THETA}&kind=max", f"theta={THETA}&t=0", "n=16"],
)  # fmt: skip
def test_regions_bad_requests(client, query):
    response = client.get(f"/api/regions?{query}")
    assert response.status_code == 400 and response.get_json()["error"]


def test_gradient_steps_lower_the_loss(client):
    theta = [float(v) for v in THETA.split(",")]
    losses = []
    for _ in range(5):
        r = ok(client.post("/api/regions/step", json={"theta": theta, "lr": 0.5}))
        assert r["loss_after"] < r["loss_before"]
        losses.append(r["loss_after"])
        theta = r["theta"]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5
    regions = plane_regions(np.array(theta), 1.0, "softmax", 8)
    assert regions["loss"] == pytest.approx(losses[-1])


@pytest.mark.parametrize(
    "body",
    [b'{"theta": [1, 2], "lr": 0.5}', b'{"theta": [1,0,0,0,1,0,-1,-1,0], "lr": 0}',
     b'{"theta": [1,0,0,0,1,0,-1,-1,0], "lr": "fast"}', b'{"theta": [1,0,0,0,1,0,-1,-1,NaN]}',
     b"[1, 2, 3]", b"{not json", b'{"theta": [1,0,0,0,1,0,-1,-1,0], "step": 1}', b""],
)  # fmt: skip
def test_step_bad_requests(client, body):
    response = client.post("/api/regions/step", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "\n" not in response.get_json()["error"]


# ------------------------------------------------------------------------- the trained model


def test_model_info(client, trained_files):
    info = ok(client.get("/api/model"))
    assert info["source"] == str(trained_files.model)
    assert info["temperature"] == pytest.approx(trained_files.temperature)
    assert info["class_names"] == [str(i) for i in range(10)] and info["image_shape"] == [28, 28]
    assert info["examples"] == {"test": 24, "mistakes": 24}
    assert client.get("/api/model?x=1").status_code == 400


def test_examples_and_confident_mistakes(client, model, trained_files):
    items = ok(client.get("/api/examples?set=test"))["items"]
    assert len(items) == 24 and all(len(item["pixels"]) == 784 for item in items)
    test = trained_files.test
    for item in items[:3]:
        assert item["pixels"] == test.X[item["index"]].tolist()
        assert item["label"] == str(test.y[item["index"]])
    mistakes = ok(client.get("/api/examples?set=mistakes"))["items"]
    confidence = []
    for item in mistakes:
        r = ok(client.post("/api/predict", json={"pixels": item["pixels"], "t": 1}))
        assert r["label"] != item["label"]  # each one really is a mistake
        confidence.append(max(r["p"]))
    assert confidence == sorted(confidence, reverse=True)  # most confident first
    assert client.get("/api/examples?set=train").status_code == 400


def test_predict_pixels_gives_the_models_calibrated_probabilities(client, model, trained_files):
    test = trained_files.test
    hits = 0
    for i in range(20):
        r = ok(client.post("/api/predict", json={"pixels": test.X[i].tolist()}))
        expected = model.predict_proba(test.X[i : i + 1], trained_files.temperature)[0]
        np.testing.assert_allclose(r["p"], expected, rtol=1e-12)
        assert len(r["p"]) == 10 and r["label"] == str(int(np.argmax(expected)))
        assert r["t"] == pytest.approx(trained_files.temperature)
        hits += r["label"] == str(test.y[i])
        total = np.sum(r["contribution"]) + r["bias"]  # the logit, pixel by pixel
        assert total == pytest.approx(r["logits"][r["index"]], abs=1e-3)
        # what the model reads: the deskewed digit, drawn on the page instead of the raw one
        np.testing.assert_allclose(r["seen"], deskew(test.X[i : i + 1], (28, 28))[0], atol=0.01)
        assert r["pixels"] == test.X[i].tolist()
    assert hits >= 16
    hot = ok(client.post("/api/predict", json={"pixels": test.X[0].tolist(), "t": 5}))
    np.testing.assert_allclose(hot["p"], model.predict_proba(test.X[:1], 5.0)[0], rtol=1e-12)


def test_predict_returns_the_conformal_set_at_any_alpha(client, model, trained_files):
    """The set is the conformal file's, on the fitted-T probabilities, whatever t is asked."""
    conformal = load_conformal(trained_files.model.parent / "conformal.json", 10)
    X = trained_files.test.X[:60]
    P = model.predict_proba(X, trained_files.temperature)
    names = [str(k) for k in range(10)]
    assert ok(client.get("/api/model"))["conformal"] == {
        "method": "lac",
        "alpha": 0.05,
        "mondrian": False,
    }
    for alpha in (None, 0.01, 0.3):
        expected = set_names(conformal.sets(P, alpha), P, names)
        extra = {} if alpha is None else {"alpha": alpha}
        got = [ok(client.post("/api/predict", json={"pixels": x.tolist(), "t": 3, **extra}))
               for x in X]  # fmt: skip
        assert [r["set"] for r in got] == expected
        assert {r["alpha"] for r in got} == {0.05 if alpha is None else alpha}
    sizes = [len(s) for s in set_names(conformal.sets(P, 0.01), P, names)]
    assert max(sizes) > 1  # the small alpha asks for hesitant sets on some images


def test_predict_image_goes_through_the_mnist_normalisation(client, trained_files):
    test = trained_files.test
    hits = 0
    for i in range(20):
        digit = test.X[i].reshape(28, 28)
        # as a person draws it: dark ink on white, larger, off centre
        drawing = np.full((200, 160), 255, np.uint8)
        drawing[20:132, 30:142] = 255 - np.kron(digit, np.ones((4, 4), np.uint8))
        r = ok(client.post("/api/predict", json={"image": png_url(drawing)}))
        assert r["pixels"] == normalize_digit(drawing).ravel().tolist()
        hits += r["label"] == str(test.y[i])
    assert hits >= 16


BAD_PREDICT = [
    ({"pixels": [0] * 783}, "pixels must be a list of 784 integers 0-255, got 783 values"),
    ({"pixels": [0] * 783 + [256]}, "pixels[783]=256 is not an integer from 0 to 255"),
    ({"pixels": [-1] + [0] * 783}, "pixels[0]=-1"),
    ({"pixels": [0.5] + [0] * 783}, "pixels[0]=0.5"),
    ({"pixels": ["7"] + [0] * 783}, "pixels[0]='7'"),
    ({"pixels": [True] + [0] * 783}, "pixels[0]=True"),
    ({"pixels": "0,0,0"}, "pixels must be a list"),
    ({"pixels": [0] * 784, "t": 0}, "t=0 is out of range"),
    ({"pixels": [0] * 784, "t": "hot"}, "t must be a number"),
    ({"pixels": [0] * 784, "alpha": 1}, "alpha=1 is out of range (allowed: 0.001 to 0.999)"),
    ({"pixels": [0] * 784, "image": "data:image/png;base64,"}, "exactly one of"),
    ({}, "exactly one of"),
    ({"pixels": [0] * 784, "colour": 1}, "unknown field 'colour'"),
    ({"image": 42}, "image must be a data URL"),
    ({"image": "data:image/jpeg;base64,AAAA"}, "image must be a data URL"),
    ({"image": "data:image/png;base64,%%%"}, "image is not a readable PNG"),
    ({"image": "data:image/png;base64," + base64.b64encode(b"GIF89a....").decode()},
     "image is not a readable PNG"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_PREDICT)
def test_predict_bad_requests_get_400_and_one_line(client, body, message):
    response = client.post("/api/predict", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error and "\n" not in error


def test_predict_refuses_blank_and_huge_images(client):
    blank = client.post("/api/predict", json={"image": png_url(np.full((50, 50), 255, np.uint8))})
    assert blank.status_code == 400 and "no ink" in blank.get_json()["error"]
    huge = client.post("/api/predict", json={"image": png_url(np.zeros((10, 3000), np.uint8))})
    assert huge.status_code == 400 and "at most 2000" in huge.get_json()["error"]


def test_predict_refuses_bodies_over_1_mb_and_bad_json(client):
    big = json.dumps({"pixels": [0] * 784, "pad": "x" * MAX_BODY_BYTES}).encode()
    response = client.post("/api/predict", data=big, content_type="application/json")
    assert (
        response.status_code == 400
        and "larger than 1,000,000 bytes" in response.get_json()["error"]
    )
    for body in (b"{", b"[0, 1]", b'{"pixels": [NaN]}', b"\xff\xfe"):
        response = client.post("/api/predict", data=body, content_type="application/json")
        assert response.status_code == 400, body
