"""reports/studies/NAME.md and its figures (reports/studies/NAME/*.png), from `dvc exp show` and the toy parts.

The numbers in the tables and figures are the points' DVC metrics, the same dicts their MLflow
runs logged; the toy parts' facts are stored beside the figures (toy.json) so a report can be
rebuilt without rerunning them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path
from pipeline.studies import figures
from pipeline.studies.definitions import DATA_SIZE_FEATURE_SET, L2_STRENGTHS, WIDTHS, Study
from pipeline.studies.runner import PlannedPoint
from pipeline.studies.toy import ToyResult

REPORTS_DIR = Path("reports/studies")
ACCURACIES = ("train_accuracy", "val_accuracy", "test_accuracy")
SPREADS = ("train_loss", *ACCURACIES)  # the convexity study: how far apart the seeds' kept solutions are


def _value(results: dict, label: str, run: str, key: str):
    value = results.get(label, {}).get(run, {}).get(key)
    return None if value is None else float(value)


def points_table(planned: list[PlannedPoint], results: dict) -> str:
    """Markdown: one row per point and training run; points not run yet show as `not run`."""
    lines = ["| point | DVC experiment | run | settings | train | val | test | train seconds |", "|---|---|---|---|---:|---:|---:|---:|"]
    for item in planned:
        settings = ", ".join(f"{key}={value}" for key, value in item.point.overrides.items()) or "(study settings)"
        for run in item.point.runs:
            if item.point.label not in results:
                lines.append(f"| {item.point.label} | {item.name} | {run} | {settings} | not run | | | |")
                continue
            cells = [_value(results, item.point.label, run, key) for key in (*ACCURACIES, "train_seconds")]
            shown = ["" if cell is None else f"{cell:.4f}" if index < 3 else f"{cell:.1f}" for index, cell in enumerate(cells)]
            lines.append(f"| {item.point.label} | {item.name} | {run} | {settings} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _by_label(planned: list[PlannedPoint]) -> dict[str, PlannedPoint]:
    return {item.point.label: item for item in planned}


def width_vs_l2_section(planned, results) -> tuple[dict, list[str]]:
    grids = {key: np.full((len(WIDTHS), len(L2_STRENGTHS)), np.nan) for key in ("train_accuracy", "val_accuracy")}
    for item in planned:
        row = WIDTHS.index(item.point.overrides["mlp.hidden_sizes"][0])
        column = L2_STRENGTHS.index(item.point.overrides["mlp.reg_strengths"][0])
        for key, grid in grids.items():
            value = _value(results, item.point.label, item.point.runs[0], key)
            grid[row, column] = np.nan if value is None else value
    made = {
        f"heatmap_{key}.png": figures.heatmap(grid, list(WIDTHS), [f"{s:g}" for s in L2_STRENGTHS], "hidden units", "L2 strength", f"MLP on pixels: {key.replace('_', ' ')}")
        for key, grid in grids.items()
    }
    facts = []
    if np.isfinite(grids["val_accuracy"]).any():
        row, column = np.unravel_index(np.nanargmax(grids["val_accuracy"]), grids["val_accuracy"].shape)
        facts.append(f"Best validation accuracy {grids['val_accuracy'][row, column]:.4f} at {WIDTHS[row]} hidden units and L2 {L2_STRENGTHS[column]:g}.")
        widest = grids["val_accuracy"][-1]
        if np.isfinite(widest).any():
            facts.append(f"At {WIDTHS[-1]} units the best L2 is {L2_STRENGTHS[int(np.nanargmax(widest))]:g} (validation {np.nanmax(widest):.4f}); "
                         f"train minus validation accuracy there: {grids['train_accuracy'][-1, int(np.nanargmax(widest))] - np.nanmax(widest):.4f}.")
    return made, facts


def activations_section(planned, results) -> tuple[dict, list[str]]:
    labels = [item.point.label for item in planned]
    series = {key: [_value(results, item.point.label, item.point.runs[0], key) for item in planned] for key in ("val_accuracy", "test_accuracy")}
    made = {"activations.png": figures.grouped_bars(labels, series, "accuracy", "MLP on pixels by activation; linear = softmax classifier")}
    facts = []
    by_label = _by_label(planned)
    if "none" in by_label and "linear" in by_label:
        none, linear = ({key: _value(results, label, by_label[label].point.runs[0], key) for key in ACCURACIES} for label in ("none", "linear"))
        if none["test_accuracy"] is not None and linear["test_accuracy"] is not None:
            above = [label for label, value in zip(labels, series["test_accuracy"]) if value is not None and value > max(none["test_accuracy"], linear["test_accuracy"])]
            facts.append(
                f"Activation none: test accuracy {none['test_accuracy']:.4f}, the softmax classifier {linear['test_accuracy']:.4f} "
                f"({none['test_accuracy'] - linear['test_accuracy']:+.4f}); above both: {', '.join(above) or 'none'}. "
                "With none the MLP computes one linear map (its weight matrices' product, checked in the toy part below), so it "
                "can reach only what a linear classifier reaches; what is left between the two is optimization, not capacity: in the "
                f"same number of epochs the factorized form fits the training split further (train accuracy {none['train_accuracy']:.4f} "
                f"against {linear['train_accuracy']:.4f})."
            )
    return made, facts


def depth_section(planned, results) -> tuple[dict, list[str]]:
    depths = [len(item.point.overrides["mlp.hidden_sizes"]) for item in planned]
    series = {key: [_value(results, item.point.label, item.point.runs[0], key) for item in planned] for key in ACCURACIES}
    return {"depth.png": figures.lines(depths, series, "hidden layers (256 units each)", "accuracy", "MLP on pixels by depth")}, []


def convexity_section(planned, results) -> tuple[dict, list[str]]:
    facts = []
    series = {}
    for model in ("softmax", "mlp"):
        items = [item for item in planned if item.point.label.startswith(f"{model}-")]
        values = {key: [v for v in (_value(results, item.point.label, item.point.runs[0], key) for item in items) if v is not None] for key in SPREADS}
        series[model] = values
        if values["test_accuracy"]:
            loss = values["train_loss"]
            loss_fact = f"final train loss {min(loss):.4f} to {max(loss):.4f} (spread {np.ptp(loss):.1e}), " if loss else ""
            facts.append(f"{model}, {len(values['test_accuracy'])} seeds: {loss_fact}test accuracy {min(values['test_accuracy']):.4f} to "
                         f"{max(values['test_accuracy']):.4f} (spread {np.ptp(values['test_accuracy']):.4f}), train accuracy spread {np.ptp(values['train_accuracy']):.4f}.")
    labels = [f"{model} {key.replace('_accuracy', '').replace('_', ' ')}" for model in series for key in SPREADS]
    spreads = [float(np.ptp(series[model][key])) if series[model][key] else None for model in series for key in SPREADS]
    return {"seed_spread.png": figures.grouped_bars(labels, {"max - min over seeds": spreads}, "spread (loss; accuracy)", "Spread over seeds (DVC points)")}, facts


def data_size_section(planned, results) -> tuple[dict, list[str]]:
    fractions = [item.point.overrides["data.train_fraction"] for item in planned]
    series = {}
    for index, name in enumerate((f"SVM on {DATA_SIZE_FEATURE_SET}", "MLP on pixels")):
        series[name] = [_value(results, item.point.label, item.point.runs[index], "test_accuracy") for item in planned]
    made = {"data_size.png": figures.lines(fractions, series, "fraction of the training split", "test accuracy", "Test accuracy against training-set size", log_x=True)}
    linear, mlp = series.values()
    overtaken = [f for f, a, b in zip(fractions, linear, mlp) if a is not None and b is not None and b > a]
    compared = [f for f, a, b in zip(fractions, linear, mlp) if a is not None and b is not None]
    if compared:
        facts = [f"The MLP on pixels beats the SVM on {DATA_SIZE_FEATURE_SET} from {min(overtaken):.0%} of the training split on."
                 if overtaken else f"The MLP on pixels does not overtake the SVM on {DATA_SIZE_FEATURE_SET} at any size tried (up to {max(compared):.0%} of the training split)."]
    else:
        facts = []
    return made, facts


SECTIONS = {
    "width-vs-l2": width_vs_l2_section,
    "activations": activations_section,
    "depth": depth_section,
    "convexity": convexity_section,
    "data-size": data_size_section,
}


def save_figures(made: dict, folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, figure in made.items():
        with atomic_path(folder / file_name) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
        plt.close(figure)
        paths.append(folder / file_name)
    return paths


def save_toy(toy: ToyResult, folder: Path) -> None:
    save_figures(toy.figures, folder)
    with atomic_path(folder / "toy.json") as temporary:
        Path(temporary).write_text(json.dumps({"values": toy.values, "facts": toy.facts, "figures": sorted(toy.figures)}, indent=2))


def load_toy(folder: Path) -> dict | None:
    path = folder / "toy.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_report(study: Study, planned: list[PlannedPoint], results: dict, command: str, context: dict, root: Path = REPORTS_DIR) -> list[Path]:
    """Write NAME.md and its figures; returns every file written (the report first)."""
    folder = root / study.name
    made, facts = SECTIONS[study.name](planned, results) if study.name in SECTIONS else ({}, [])
    written = save_figures(made, folder)
    toy = load_toy(folder) if study.toy else None
    lines = [f"# Study: {study.name}", "", f"**{study.question}**", "", f"Run with `{command}`."]
    lines += [f"{key}: {value}" for key, value in context.items()]
    if study.points:
        lines += ["", f"{len(results)} of {len(planned)} points done, each a DVC experiment (`dvc exp show`), "
                  "logged to MLflow under the parent run `study " + study.name + "`.", ""]
        lines += [f"![{name}]({study.name}/{name})" for name in made] + [""]
        lines += [f"- {fact}" for fact in facts] + [""]
        lines += [points_table(planned, results)]
    if toy:
        lines += ["", "## In-process toy problems (the pipeline's MLP and train(), seeded)", ""]
        lines += [f"![{name}]({study.name}/{name})" for name in toy["figures"]] + [""]
        lines += [f"- {fact}" for fact in toy["facts"]]
        written += [folder / name for name in toy["figures"]]
    if study.notes:
        lines += ["", f"Note: {study.notes}"]
    report = root / f"{study.name}.md"
    with atomic_path(report) as temporary:
        Path(temporary).write_text("\n".join(lines) + "\n")
    return [report] + written
