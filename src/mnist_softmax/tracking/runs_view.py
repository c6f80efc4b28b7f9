"""The runs table MLflow's UI opens with: the three headline metrics as columns, newest first.

MLflow 3.15+ keeps a shared view of the runs page (columns, their order, the sort) as the
experiment tag ``mlflow.sharedViewState.<key>``, applied when the page's URL carries
``viewStateShareKey=<key>``. The format is not documented; read from MLflow 3.17's UI source
(``useSharedExperimentViewState``): a JSON object holding the search facets (``orderByKey``,
``orderByAsc``, ...) and UI-state fields (``selectedColumns``, ...), where a column is
``<type>.`<key>``` (``metrics.`test/acc```). The log stage writes the tag with the experiment;
``mnist-softmax ui`` links to it. tests/test_ui_browser.py checks the result in Chromium.
"""

from __future__ import annotations

import json

from mnist_softmax.tracking.run_record import HEADLINE

SHARE_KEY = "compare"
TAG = f"mlflow.sharedViewState.{SHARE_KEY}"
URL_PARAMETER = "viewStateShareKey"


def view_state() -> str:
    """Return the tag's value: the headline metrics as columns, wide enough to read.

    Column ids are the runs grid's own (``attributes.`Run Name```, ``metrics.`test/acc```).
    The model and dataset columns are left out, so the three metric columns fit beside the
    name without scrolling. (A ``columnOrder`` is not applied reliably by MLflow 3.17's grid
    on a first visit; the metric columns come in name order after Created and Duration.)
    """
    metrics = [f"metrics.`{key}`" for key in HEADLINE]
    state = {
        "selectedColumns": metrics,
        "columnWidths": {"attributes.`Run Name`": 280, **dict.fromkeys(metrics, 150)},
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    return json.dumps(state, separators=(",", ":"))
