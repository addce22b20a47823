"""Training problems worth a banner at the top of the Run page: NaN/Inf, divergence, dead units, exploding activations.

Each check reads only data the run already holds (epoch metrics, the latest activation statistics, events), so the
checks cost little on every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kerascope.app.formatting import number_text
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

DEAD_ZERO_FRAC = 0.99  # a ReLU layer whose outputs are (almost) all exactly zero has stopped learning
EXPLODING_STD = 1e3  # activation spread far beyond what initializations produce
EXPLODING_GROWTH = 100.0  # std grew this many times since the first record
DIVERGENCE_FACTOR = 2.0  # latest loss more than this many times the best one so far


@dataclass(frozen=True)
class Alert:
    level: str  # "error" or "warning"
    title: str
    detail: str


def run_alerts(run: Run) -> list[Alert]:
    """Every alert for `run`, most serious first."""
    alerts = _non_finite(run) + _divergence(run.epoch_metrics()) + _activation_alerts(run.activations())
    return sorted(alerts, key=lambda alert: alert.level != "error")


def _non_finite(run: Run) -> list[Alert]:
    events = run.events()
    metrics = set()
    for data in events.loc[events["kind"] == fmt.EVENT_NAN, "data"]:
        if isinstance(data, dict) and data.get("metric"):
            metrics.add(str(data["metric"]))
    epoch = run.epoch_metrics()
    if len(epoch):
        last = epoch.iloc[-1]
        for column in epoch.columns:
            if column not in fmt.NON_METRIC_COLUMNS and np.isinf(last[column]):
                metrics.add(column)
    if not metrics:
        return []
    return [Alert("error", "NaN/Inf in metrics", f"non-finite values in {', '.join(sorted(metrics))}: training "
                  "has numerically broken down (lower the learning rate, clip gradients, check the inputs)")]


def _divergence(epoch: pd.DataFrame) -> list[Alert]:
    alerts = []
    for column in ("loss", "val_loss"):
        if column not in epoch or len(epoch) < 3:
            continue
        values = epoch[column].to_numpy(float)
        values = values[np.isfinite(values)]
        if len(values) < 3:
            continue
        best, last = values.min(), values[-1]
        if best > 0 and last > DIVERGENCE_FACTOR * best and last > values[-2]:
            alerts.append(Alert("warning", f"{column} is diverging",
                                f"{column} is {number_text(last)}, {number_text(last / best)}x its best value "
                                f"{number_text(best)}"))
    return alerts


FLOAT_LIMIT = 1e38  # float32's largest finite value is 3.4e38: statistics at this size mean an overflow


def overflowed_rows(frame: pd.DataFrame) -> list[str]:
    """Rows (layers) whose latest statistics are non-finite or at the float limit: overflowed, not dead (their
    spread can read 0 because every value is the same -3.4e38)."""
    if not len(frame) or "row" not in frame:
        return []
    latest = frame[frame["step"] == frame["step"].max()]
    rows = []
    for _, record in latest.iterrows():
        values = pd.to_numeric(pd.Series([record.get(k) for k in ("min", "max", "mean", "std")]), errors="coerce")
        if (~np.isfinite(values.dropna())).any() or (values.abs() >= FLOAT_LIMIT).any():
            rows.append(str(record["row"]))
    return list(dict.fromkeys(rows))  # a divergence snapshot at an epoch's end repeats that step's records


def dead_share(frame: pd.DataFrame) -> dict[str, float]:
    """Each activation row's latest share of exact zeros (dead units), for rows where it is at least 50 %."""
    if not len(frame) or "zero_frac" not in frame:
        return {}
    latest = frame[frame["step"] == frame["step"].max()]
    shares = pd.to_numeric(latest["zero_frac"], errors="coerce")
    return {str(row): float(share) for row, share in zip(latest["row"], shares, strict=True) if share >= 0.5}


def _activation_alerts(activations: pd.DataFrame) -> list[Alert]:
    if not len(activations):
        return []
    frame = activations.dropna(subset=["step", "layer"])
    if not len(frame):
        return []
    # A value that is not a number (a hand-made or damaged record) is skipped, as if it were not recorded.
    zero_frac, stds = (pd.to_numeric(frame[column], errors="coerce") for column in ("zero_frac", "std"))
    is_latest = frame["step"] == frame["step"].max()
    latest = frame[is_latest]
    alerts = []
    latest_zero = zero_frac[is_latest]
    dead = latest_zero >= DEAD_ZERO_FRAC
    if dead.any():
        names = ", ".join(f"{layer} ({frac:.0%} zeros)"
                          for layer, frac in zip(latest["layer"][dead], latest_zero[dead], strict=True))
        alerts.append(Alert("warning", "Dead units", f"layers whose outputs are almost all zero: {names}. "
                            "Dead ReLUs: try a lower learning rate, LeakyReLU or better initialization"))
    first = stds.groupby(frame["layer"], sort=False).first()  # each layer's first numeric spread
    exploding = []
    for layer, std in zip(latest["layer"], stds[is_latest], strict=True):
        grown = first[layer] > 0 and std / first[layer] > EXPLODING_GROWTH
        if np.isfinite(std) and (std > EXPLODING_STD or grown):
            exploding.append(f"{layer} (std {number_text(std)})")
    if exploding:
        alerts.append(Alert("warning", "Exploding activations", f"activations grew very large in "
                            f"{', '.join(exploding)}: consider normalization or a lower learning rate"))
    return alerts


def _lr_at(run: Run, step: int | None) -> float | None:
    """The logged learning rate of the last batch at or before `step` (runs whose divergence has no `lr`)."""
    arrays = run.arrays("batch")
    if step is None or "lr" not in arrays or not len(arrays["step"]):
        return None
    index = int(np.searchsorted(arrays["step"], step, side="right")) - 1
    value = float(arrays["lr"][index]) if index >= 0 else float("nan")
    return value if np.isfinite(value) else None


def _evidence_text(evidence: dict | None) -> str | None:
    if not evidence:
        return None
    source = str(evidence.get("source", ""))
    noun = "gradient norm" if source == "gradients" else "activation spread (std)"
    rule = evidence.get("rule")
    value, baseline, ratio = (evidence.get(k) for k in ("value", "baseline", "ratio"))
    if rule == "first non-finite":
        text = f"its {source} were the first in forward order to turn NaN/Inf"
    elif rule == "largest jump" and all(isinstance(v, (int, float)) for v in (value, baseline, ratio)):
        text = (f"its {noun} jumped to {number_text(value)}, {number_text(ratio)}x its recent median "
                f"{number_text(baseline)} (the largest jump)")
    elif isinstance(value, (int, float)):
        text = f"the largest {noun} ({number_text(value)}); no history to compare with yet"
    else:
        return None
    broken = evidence.get("nonfinite_layers")
    if isinstance(broken, list) and broken:
        text += f"; non-finite at that moment: {', '.join(str(layer) for layer in broken)}"
    return text


def _number(text: str) -> float | None:
    """A divergence value ("nan", "inf", "-inf" or the loss as text) as a number; None when it is not one."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def what_went_wrong(run: Run) -> list[tuple[str, str]] | None:
    """The "What went wrong" panel of a diverged run: (label, plain text) rows, or None when it did not diverge."""
    divergence = run.divergence
    if divergence is None:
        return None
    where = f"step {divergence.step:,}" if divergence.step is not None else "an unknown step"
    if divergence.epoch is not None:
        where += f" (epoch {divergence.epoch + 1})"
    value = _number(divergence.value)
    if divergence.rule == fmt.DIVERGENCE_SPIKE and divergence.best and value is not None:
        what = (f"{divergence.metric} rose to {number_text(value)}, {number_text(value / divergence.best)}x its best "
                f"{number_text(divergence.best)}")
    else:
        what = f"{divergence.metric} became {number_text(value) if value is not None else divergence.value}"
    rows = [("When", where), ("What", what)]
    lr = divergence.lr if divergence.lr is not None else _lr_at(run, divergence.step)
    rows.append(("Learning rate", number_text(lr) if lr is not None else "not recorded"))
    if divergence.layer:
        rows.append(("First layer to break", divergence.layer))
        evidence = _evidence_text(divergence.evidence)
        if evidence:
            rows.append(("Evidence", evidence))
    if not len(run.gradients()):
        rows.append(("Gradients", "not recorded: pass LiveMonitor(gradient_data=(x_val[:64], y_val[:64])) to see "
                                  "per-layer gradients and which layer broke first"))
    else:
        rows.append(("Gradients", "per-layer gradient norms over steps: the Activations & weights page"))
    return rows
