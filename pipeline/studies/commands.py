"""What `featurebench study list | run | report` do: plan a study's points, run them, write its report."""
from __future__ import annotations

import shlex
import time
from pathlib import Path

import yaml

from pipeline import tracking
from pipeline.studies import runner
from pipeline.studies.definitions import STUDIES, get_study
from pipeline.studies.report import REPORTS_DIR, save_toy, write_report


def study_rows() -> list[tuple[str, str, int, str]]:
    """(name, question, DVC experiments, expected time on the default data) per study."""
    rows = []
    for study in STUDIES.values():
        minutes = study.expected_seconds() / 60
        rows.append((study.name, study.question, len(study.points), f"~{minutes:.0f} min" if minutes >= 1 else "<1 min"))
    return rows


def _params() -> dict:
    path = Path("params.yaml")
    if not path.exists():
        raise FileNotFoundError("params.yaml not found: run featurebench study from the project root")
    return yaml.safe_load(path.read_text()) or {}


def command_line(name: str, data: str | None, extra: list[str], only: list[str] | None) -> str:
    words = ["featurebench", "study", "run", name] + (["--data", data] if data else []) + [w for item in extra for w in ("-S", item)]
    return shlex.join(words + (["--points", ",".join(only)] if only else []))


def run_study(name: str, data: str | None = None, extra: list[str] = (), only: list[str] | None = None, jobs: int = 1, echo=print) -> tuple[list[Path], list[str]]:
    """Run the points DVC does not hold yet, the toy part, group the runs in MLflow, write the report.

    Returns (files written, names of points that failed).
    """
    study = get_study(name)
    planned = runner.plan(study, _params(), data, list(extra), only)
    start = time.perf_counter()
    missing = runner.run_points(planned, jobs, echo) if planned else []
    points_seconds = time.perf_counter() - start
    context = {}
    if study.toy:
        from pipeline.studies.toy import run_toy

        echo(f"{name}: in-process toy problems")
        toy_start = time.perf_counter()
        save_toy(run_toy(name), REPORTS_DIR / name)
        context["Toy part"] = f"{time.perf_counter() - toy_start:.0f} s"
    if planned:
        context["DVC points this run"] = f"{points_seconds / 60:.1f} min (resumed points are not rerun)"
    written = _report(study, planned, command_line(name, data, list(extra), only), context, data)
    return written, [item.name for item in missing]


def report_study(name: str, data: str | None = None, extra: list[str] = (), only: list[str] | None = None) -> list[Path]:
    """Rebuild the report from the experiments DVC holds (and the toy part's stored facts, or a fresh run of it)."""
    study = get_study(name)
    planned = runner.plan(study, _params(), data, list(extra), only)
    if study.toy and not (REPORTS_DIR / name / "toy.json").exists():
        from pipeline.studies.toy import run_toy

        save_toy(run_toy(name), REPORTS_DIR / name)
    return _report(study, planned, command_line(name, data, list(extra), only), {}, data)


def _report(study, planned, command: str, context: dict, data: str | None) -> list[Path]:
    results = runner.read_results(planned) if planned else {}
    context = {"Commit": tracking.git_commit()[:12], **({"Data": data or "params.yaml's data section"} if planned else {}), **context}
    written = write_report(study, planned, results, command, context)
    if planned and results:
        for run_id in runner.group_in_mlflow(study, planned, data).values():
            tracking.log_study_report(run_id, written)
    return written
