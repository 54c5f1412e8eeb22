"""Run a study's points as DVC experiments: queued with `dvc exp run --queue -S ...`, run with `--run-all`.

Each point gets a name from its study, label and a digest of params.yaml and everything it overrides, so a study
run again (after Ctrl-C, a failure, or to add points) skips the experiments DVC already holds for
the current commit, and a change of data or settings makes new ones. Prepare and extract are not
redone per point: DVC restores them from its run cache when their params match.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import tracking
from pipeline.params import check_overrides, parse_assignment
from pipeline.studies.definitions import Point, Study


class StudyError(ValueError):
    """DVC refused a study's command; the message carries DVC's own ERROR line."""


@dataclass(frozen=True)
class PlannedPoint:
    point: Point
    name: str  # the DVC experiment's name
    overrides: tuple[str, ...]  # the `-S` values, in order


def data_overrides(data: str | None) -> dict:
    """--data: a data set name (shapes, cifar10) or a folder/archive of class folders (imagefolder)."""
    if data is None:
        return {}
    if data in ("shapes", "cifar10"):
        return {"data.name": data}
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {data}: no such file or folder; give shapes, cifar10 or the path of an image folder or archive")
    if path.name.startswith("cifar-10-python"):
        return {"data.name": "cifar10", "data.path": str(path.resolve())}
    return {"data.name": "imagefolder", "data.path": str(path.resolve())}  # absolute: the points run in copies of the repo


def format_value(value) -> str:
    """A params value as `-S` takes it (YAML flow style: [256, 256], 0.001, false)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def removals(study: Study, params: dict) -> list[str]:
    """Overrides dropping the extractors a study does not use (`~extractors.NAME`) and the per feature set
    overrides that name them: `-S` cannot name a key holding '+', so such a section's `overrides` is
    dropped whole and its other entries set again."""
    if not study.points:
        return []
    unused = [name for name in params.get("extractors", {}) if name not in study.extractors]
    dropped = [f"~extractors.{name}" for name in unused]
    for section in ("linear", "mlp"):
        overrides = params.get(section, {}).get("overrides") or {}
        if not any(member in unused for feature_set in overrides for member in str(feature_set).split("+")):
            continue
        dropped.append(f"~{section}.overrides")
        for feature_set, settings in overrides.items():
            members = str(feature_set).split("+")
            if len(members) == 1 and members[0] not in unused:
                dropped.append(f"++{section}.overrides.{feature_set}={format_value(settings)}")
    return dropped


def plan(study: Study, params: dict, data: str | None = None, extra: list[str] = (), only: list[str] | None = None) -> list[PlannedPoint]:
    """The experiments of a study against the current params.yaml: names and `-S` overrides, in order."""
    points = study.points
    if only:
        unknown = sorted(set(only) - {point.label for point in points})
        if unknown:
            raise ValueError(f"study {study.name} has no point(s) {', '.join(unknown)}; its points: {', '.join(p.label for p in points)}")
        points = tuple(point for point in points if point.label in only)
    extra_settings = dict(parse_assignment(item) for item in extra)
    planned = []
    for point in points:
        settings = {**study.settings, **data_overrides(data), **point.overrides, **extra_settings}  # later wins
        overrides = tuple(removals(study, params) + [f"++{key}={format_value(value)}" for key, value in settings.items()])
        check_overrides(list(overrides), raw=params)  # a bad -S is refused here, naming the key, not after every point failed
        # params.yaml is in the digest too: an uncommitted change to it is part of what a queued point runs
        digest = hashlib.sha256(json.dumps([overrides, point.runs, params], sort_keys=True, default=str).encode()).hexdigest()[:7]
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{study.name}-{point.label}") + f"-{digest}"
        planned.append(PlannedPoint(point, name, overrides))
    return planned


def dvc(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *arguments], capture_output=True, text=True)
    if check and result.returncode != 0:
        errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")] or (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise StudyError(f"dvc {' '.join(arguments[:3])} ... failed: {' '.join(errors)}")
    return result


def existing_experiments() -> set[str]:
    """Names of the DVC experiments of the current commit that finished (`exp ls` leaves out failed ones)."""
    return {line.strip() for line in dvc("exp", "ls", "--name-only").stdout.splitlines() if line.strip()}


def run_points(planned: list[PlannedPoint], jobs: int = 1, echo=print) -> list[PlannedPoint]:
    """Queue the points DVC does not hold yet and run them; returns the points that are still missing."""
    done = existing_experiments()
    pending = [item for item in planned if item.name not in done]
    echo(f"{len(planned) - len(pending)} of {len(planned)} points already done; running {len(pending)}")
    if not pending:
        return []
    # a run stopped half-way leaves its points queued (or failed): queue them afresh, once
    dvc("queue", "remove", *[item.name for item in pending], check=False)
    for item in pending:
        arguments = ["exp", "run", "--queue", "-n", item.name]
        for override in item.overrides:
            arguments += ["-S", override]
        dvc(*arguments, *dict.fromkeys(training_stage(run) for run in item.point.runs))
    echo(f"+ dvc exp run --run-all -j {jobs}  ({len(pending)} queued; `dvc queue status` to follow)")
    subprocess.run(["dvc", "exp", "run", "--run-all", "-j", str(jobs)])
    done = existing_experiments()
    return [item for item in pending if item.name not in done]


def metrics_path(run: str) -> str:
    """The metrics.json of a training run (its results/train folder: `svm-hog`, `mlp-pixels`)."""
    return f"results/train/{run}/metrics.json"


def training_stage(run: str) -> str:
    """The DVC stage that trains a run: mlp-pixels -> train_mlp@pixels; svm-hog and softmax-hog -> train@hog (one stage)."""
    classifier, _, feature_set = run.partition("-")
    return f"train_mlp@{feature_set}" if classifier == "mlp" else f"train@{feature_set}"


def read_results(planned: list[PlannedPoint]) -> dict[str, dict[str, dict]]:
    """{point label: {run: metrics}} for the points DVC holds, read from `dvc exp show --json`."""
    shown = json.loads(dvc("exp", "show", "--json", "--no-fetch").stdout or "[]")
    by_name = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            revision = experiment["revs"][0]
            # a failed, queued or running point is listed with its baseline's metrics, as if they were its own
            if revision.get("error") or (experiment.get("executor") or {}).get("state") in ("failed", "queued", "running"):
                continue
            by_name[experiment.get("name") or revision.get("name")] = (revision.get("data") or {}).get("metrics") or {}
    results = {}
    for item in planned:
        if item.name not in by_name:
            continue
        metrics = by_name[item.name]
        results[item.point.label] = {run: (metrics.get(metrics_path(run)) or {}).get("data", {}) for run in item.point.runs}
    return results


def group_in_mlflow(study: Study, planned: list[PlannedPoint], data: str | None) -> dict[str, str]:
    """One MLflow parent for the study, above its points' run groups; {experiment id: run id}."""
    return tracking.group_study(study.name, [item.name for item in planned], {"study_points": str(len(planned)), "study_data": data or "params.yaml"})
