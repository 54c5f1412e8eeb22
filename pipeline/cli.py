"""`featurebench`: the commands a user types around the DVC pipeline and the MLflow store."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline import tracking

EXPERIMENTS_DIR = Path("experiments")


def experiment_overrides(name: str) -> list[str]:
    """experiments/NAME.yaml (nested params) -> ['data.name=shapes', ...] for `dvc exp run -S`."""
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))) or "none"
        raise SystemExit(f"featurebench run: no experiment {name!r} in {EXPERIMENTS_DIR}/ (known: {known})")
    overrides = yaml.safe_load(path.read_text()) or {}
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}" for key, value in tracking.flatten(overrides).items()]


def command_run(args) -> int:
    command = ["dvc", "exp", "run", "-n", args.name]
    for override in experiment_overrides(args.name) + (args.set or []):
        command += ["-S", override]
    print("+ " + " ".join(command), flush=True)
    return subprocess.call(command)


def command_ui(args) -> int:
    uri = tracking.tracking_uri()
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    return subprocess.call(command)


def command_compare(args) -> int:
    table_path = Path("reports/comparison.md")
    if not table_path.exists():
        print("featurebench compare: no reports/comparison.md yet; run `dvc repro` first", file=sys.stderr)
        return 2
    print(table_path.read_text(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurebench",
        description="Hand-crafted features + linear classifiers against neural networks, as a DVC pipeline logged to MLflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a named experiment from experiments/NAME.yaml with `dvc exp run`")
    run.add_argument("name", help="experiment name, e.g. quick or cifar10")
    run.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="extra parameter override, passed to `dvc exp run -S`")
    run.set_defaults(handler=command_run)

    ui = commands.add_parser("ui", help="open the MLflow UI on the project's store")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=command_ui)

    compare = commands.add_parser("compare", help="print the comparison table written by the `compare` stage")
    compare.set_defaults(handler=command_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
