"""The champion/challenger rule: a pure function of two metric dicts and the configured rule.

Kept free of MLflow so the rule itself is tested exhaustively and cheaply; ``retrain`` feeds it
metrics that both models earned on the same test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mnist_softmax.config import RetrainConfig


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaces the champion, and each reason in one line."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "kept"


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, rule: RetrainConfig
) -> Decision:
    """Promote when every metric of the rule is within its margin of the champion's.

    ``higher_is_better`` metrics must satisfy ``new >= old - margin``; ``lower_is_better`` ones
    ``new <= old + margin``. A negative margin therefore demands a strict improvement (e.g. NLL
    lower by at least 1e-4), so retraining on unchanged data does not churn the champion.
    With no champion yet, the challenger wins by default, unless one of its metrics is NaN or
    inf (a broken model is never the first champion).
    """
    names = [*rule.higher_is_better, *rule.lower_is_better]
    broken = [n for n in names if not math.isfinite(challenger.get(n, math.nan))]
    if broken:
        reasons = [
            f"{n}: challenger's value {challenger.get(n, 'missing')}: cannot compare"
            for n in broken
        ]
        return Decision(False, reasons)
    if champion is None:
        return Decision(True, ["no champion yet: the first model is promoted"])
    failures, passes = [], []
    checks = [(name, +1) for name in rule.higher_is_better]
    checks += [(name, -1) for name in rule.lower_is_better]
    for name, sign in checks:
        if name not in challenger or name not in champion:
            failures.append(f"{name} missing (challenger or champion): cannot compare")
            continue
        new, old = challenger[name], champion[name]
        margin = float(rule.margins.get(name, 0.0))
        ok = sign * (new - old) >= -margin
        verdict = "ok" if ok else "worse"
        line = f"{name}: challenger {new:.5f} vs champion {old:.5f} (margin {margin:g}) {verdict}"
        (passes if ok else failures).append(line)
    return Decision(not failures, failures or passes)
