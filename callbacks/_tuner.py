"""Which KerasTuner trial (if any) a fit() belongs to, found without importing keras_tuner.

KerasTuner deep-copies the search's callbacks for every execution of a trial and calls `fit()` from
`Tuner._build_and_fit_model(self, trial, ...)`: the trial and the tuner are locals of a caller's frame.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trial:
    """A KerasTuner trial as a run records it."""

    trial_id: str
    hparams: dict[str, Any]  # the trial's `hyperparameters.values`
    tuner: Any  # the tuner running the search: one group per tuner


def current_trial(max_depth: int = 60) -> Trial | None:
    """The trial whose fit() is on this thread's stack, or None outside a KerasTuner search (once per fit())."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        trial = frame.f_locals.get("trial")
        if type(trial).__module__.startswith("keras_tuner") and hasattr(trial, "trial_id"):
            values = getattr(getattr(trial, "hyperparameters", None), "values", None)
            return Trial(str(trial.trial_id), dict(values or {}), frame.f_locals.get("self"))
        frame = frame.f_back
    return None


def new_group_id(tuner: Any) -> str:
    """A group id for one search: the tuner's project name (when it has one) and a random suffix."""
    project = getattr(tuner, "project_name", None)
    return f"{project}-{secrets.token_hex(3)}" if project else f"search-{secrets.token_hex(3)}"
