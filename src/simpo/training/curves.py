"""Training curves: `training_curves.png` beside `trainer_state.json`, drawn from its `log_history`.

One panel per quantity against the optimizer step: the loss, the reward accuracy and margin, the
chosen and rejected log-probs (the per-token means A(y) the loss compares), the chosen and rejected
response lengths in tokens, the learning rate and the gradient norm. Training entries are lines; evaluation entries (`eval_` keys, the step-0
evaluation included) are points on the same panels. A quantity the run did not log leaves its panel
saying so. Drawn with matplotlib's Agg canvas, so no display is needed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger("simpo")

FILENAME = "training_curves.png"
# (panel title, logged keys drawn on it)
PANELS = (
    ("loss", ("loss",)),
    ("reward accuracy (rewards/accuracies)", ("rewards/accuracies",)),
    ("reward margin (rewards/margins)", ("rewards/margins",)),
    ("log-probs, per-token mean", ("logps/chosen", "logps/rejected")),
    ("response length, tokens", ("lengths/chosen", "lengths/rejected")),
    ("learning rate", ("learning_rate",)),
    ("gradient norm", ("grad_norm",)),
)
EVAL_PREFIX = "eval_"


def extract_series(log_history: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (steps, values)} of every plotted key: training values under their own key, evaluation
    values under `eval_` + key, each in the order logged."""
    wanted = {key for _, keys in PANELS for key in keys}
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            plain = key.removeprefix(EVAL_PREFIX)
            if plain in wanted and isinstance(value, (int, float)):
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def _draw(series: dict[str, tuple[list[int], list[float]]], title: str):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(13, 7.5), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(2, 4).ravel()
    axes[-1].set_visible(False)  # seven panels
    colors = {"logps/chosen": "tab:green", "logps/rejected": "tab:red", "lengths/chosen": "tab:green", "lengths/rejected": "tab:red"}
    for ax, (name, keys) in zip(axes, PANELS):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        drawn = False
        for key in keys:
            side = key.split("/")[-1] if len(keys) > 1 else ""  # chosen / rejected on a shared panel
            color = colors.get(key, "tab:blue")
            if key in series:
                ax.plot(*series[key], color=color, linewidth=1.2, label=side or "train")
                drawn = True
            if EVAL_PREFIX + key in series:
                ax.plot(*series[EVAL_PREFIX + key], "o", color=color if side else "tab:orange", markerfacecolor="white",
                        label=f"eval {side}".strip())
                drawn = True
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"not logged in this run\n({', '.join(keys)})", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
    return figure


def write_curves(output_dir: str | Path) -> Path | None:
    """Draw `output_dir/trainer_state.json`'s log into `output_dir/training_curves.png`; None, with a
    warning, when there is no log or nothing in it to draw."""
    output_dir = Path(output_dir)
    state_path = output_dir / "trainer_state.json"
    if not state_path.is_file():
        logger.warning("no training curves: %s does not exist", state_path)
        return None
    state = json.loads(state_path.read_text())
    series = extract_series(state.get("log_history", []))
    if not series:
        logger.warning("no training curves: %s logs none of %s", state_path, ", ".join(key for _, keys in PANELS for key in keys))
        return None
    return save_figure(_draw(series, f"{output_dir.parent.name}/{output_dir.name}: {state.get('global_step', '?')} steps"),
                       output_dir / FILENAME)


def save_figure(figure, target: Path) -> Path:
    """`figure` as a PNG at `target`, written whole: into a partial file, then renamed into place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    partial = target.with_name("partial-" + target.name)
    figure.savefig(partial, format="png", dpi=100)
    os.replace(partial, target)
    return target
