"""The explorer in a real browser: no console error, nothing fetched off loopback, the numbers
follow the sliders as the API computes them, sparsemax's zeros, a drawn digit, and the latency.
"""

from __future__ import annotations

import json
import math
import urllib.request

import explorer_fixtures
import numpy as np
import pytest

trained_files = explorer_fixtures.trained_files
explorer_app = explorer_fixtures.explorer_app
explorer_url = explorer_fixtures.explorer_url

LATENCY_MOVES = 60  # slider moves timed for the p95
LATENCY_BUDGET_MS = 50.0

# one slider move, timed inside the page: from the input event to the table's update
_TIMED_MOVE = """async (value) => {
  const input = document.getElementById("pg-t"), table = document.getElementById("pg-table");
  const t0 = performance.now();
  const done = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      observer.disconnect();
      resolve(performance.now() - t0);
    });
    observer.observe(table, { childList: true, subtree: true, characterData: true });
  });
  input.value = value;
  input.dispatchEvent(new Event("input"));
  return await done;
}"""


@pytest.fixture
def page(browser, explorer_url):
    """A fresh page that records console errors and every request it makes."""
    context = browser.new_context(viewport={"width": 1150, "height": 900})
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(explorer_url)
    page.wait_for_selector("#pg-p0")
    page.wait_for_function("() => document.querySelectorAll('#dg-bars .pval').length === 10")
    yield page
    context.close()


def _wait(page, condition: str) -> None:
    """Wait until the JavaScript ``condition`` holds; ``text(id)`` is an element's text."""
    page.wait_for_function(
        f"() => {{ const text = (id) => document.getElementById(id).textContent; "
        f"return {condition}; }}"
    )


def _shown_p(page, k: int) -> list[str]:
    return [page.text_content(f"#pg-p{i}") for i in range(k)]


def _api(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_page_plays_offline_and_follows_the_api(
    page, explorer_url, screenshots_dir, capsys, tmp_path_factory
):
    set_shot = tmp_path_factory.mktemp("shots") / "explorer-set.png"  # outside the work tree
    assert _shown_p(page, 3) == ["0.7361", "0.1643", "0.0996"]  # the articles' example

    # the T slider: the numbers shown are the API's answer to the request the page made
    for value in ("-0.5", "0.8"):
        before = _shown_p(page, 3)
        page.fill("#pg-t", value)  # sets the value and fires input
        _wait(page, f"text('pg-p0') !== '{before[0]}'")
        last = [u for u in page.requests if "/api/softmax" in u][-1]
        expected = _api(last)
        assert expected["t"] == pytest.approx(10 ** float(value), rel=1e-9)
        assert _shown_p(page, 3) == [f"{p:.4f}" for p in expected["p"]]

    # latency of slider move -> updated numbers, on loopback
    moves = [str(v) for v in np.tile([-0.3, 0.3], LATENCY_MOVES // 2)]
    for value in moves[:6]:  # warm-up: connection, JIT; not timed
        page.evaluate(_TIMED_MOVE, value)
    times = [page.evaluate(_TIMED_MOVE, value) for value in moves]
    p95 = float(np.percentile(times, 95))
    with capsys.disabled():
        print(f"\nexplorer: T slider -> updated numbers over {len(times)} moves: "
              f"median {np.median(times):.1f} ms, p95 {p95:.1f} ms")  # fmt: skip
    assert p95 < LATENCY_BUDGET_MS

    # sparsemax: the preset at T = 1 leaves Cat alone, with exact zeros shown as such
    page.fill("#pg-t", "0")
    page.check('input[name="pg-kind"][value="sparsemax"]')
    page.wait_for_selector("#pg-table td.zero")
    assert _shown_p(page, 3) == ["1.0000", "0", "0"]
    page.select_option("#pg-y", "1")
    _wait(page, "text('pg-loss').includes('∞')")

    # decision regions: sparsemax marks zero regions; a gradient step lowers the loss
    page.check('input[name="rg-kind"][value="sparsemax"]')
    _wait(page, "text('rg-info').includes('zero')")
    for _ in range(2):
        page.click("#rg-step")
    _wait(page, "(text('rg-history').match(/→/g) || []).length === 2")
    losses = [float(v) for v in page.text_content("#rg-history").split(":")[1].split("→")]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]

    # a stroke on the canvas gives 10 bars for the drawing
    page.click("#dg-clear")
    box = page.locator("#dg-canvas").bounding_box()
    page.mouse.move(box["x"] + 150, box["y"] + 40)
    page.mouse.down()
    for step in range(1, 21):  # a slanted stroke, like a "1"
        page.mouse.move(box["x"] + 150 - step * 2, box["y"] + 40 + step * 10)
    page.mouse.up()
    _wait(page, "text('dg-info').startsWith('predicted')")
    _wait(page, "!text('dg-info').includes('true class')")
    shown = [float(t) for t in page.locator("#dg-bars .pval").all_text_contents()]
    assert len(shown) == 10 and math.isclose(sum(shown), 1.0, abs_tol=0.01)

    # the drawn digit's prediction set, as the API computes it, and the alpha slider
    _wait(page, "text('dg-set').startsWith('at 95% (α = 0.05)')")
    sizes = {}
    for alpha in ("0.01", "0.3"):
        page.fill("#dg-alpha", alpha)
        _wait(page, f"text('dg-set').includes('α = {alpha}')")
        drawn = page.evaluate("() => dg.pixels")
        body = json.dumps({"pixels": drawn, "alpha": float(alpha)}).encode()
        request = urllib.request.Request(f"{explorer_url}/api/predict", body,
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            expected = json.load(response)["set"]
        assert page.locator("#dg-set .chip").all_text_contents() == expected
        sizes[alpha] = len(expected)
    assert sizes["0.01"] >= sizes["0.3"] >= 0  # a smaller alpha, never a smaller set
    page.fill("#dg-alpha", "0.05")
    _wait(page, "text('dg-set').includes('α = 0.05')")
    page.locator("#digit").screenshot(path=str(set_shot))

    page.screenshot(path=str(screenshots_dir / "explorer-full.png"), full_page=True)
    page.locator("#digit").screenshot(path=str(screenshots_dir / "explorer-digit.png"))
    page.locator("#playground").screenshot(path=str(screenshots_dir / "explorer-playground.png"))
    page.locator("#regions").screenshot(path=str(screenshots_dir / "explorer-regions.png"))

    assert page.errors == []
    off_loopback = [u for u in page.requests if not u.startswith((explorer_url, "data:"))]
    assert off_loopback == []
