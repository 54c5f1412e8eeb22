"""`featurebench`: the commands a user types around the DVC pipeline and the MLflow store."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
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
    from pipeline.params import read_yaml

    overrides = read_yaml(path) or {}
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}" for key, value in tracking.flatten(overrides).items()]


def command_run(args) -> int:
    command = ["dvc", "exp", "run", "-n", args.name]
    overrides = experiment_overrides(args.name) + (args.set or [])
    from pipeline.params import check_overrides

    # checked first: `dvc exp run` writes the overrides into params.yaml, and a bad one would stay there
    check_overrides(overrides)
    for override in overrides:
        command += ["-S", override]
    print("+ " + " ".join(command), flush=True)
    # every stage of this experiment logs under one parent run in MLflow (see tracking.run_group)
    group = f"{socket.gethostname()}-{args.name}-{uuid.uuid4().hex[:12]}"
    return subprocess.call(command, env={**os.environ, tracking.RUN_GROUP_ENV: group})


def runs_table_url(base: str, experiment_id: str | None, view: str | None = None) -> str:
    """The experiment's runs table (MLflow 3's route), in a shared view if given; the experiment list before any run."""
    if not experiment_id:
        return f"{base}/"
    return f"{base}/#/experiments/{experiment_id}/runs" + (f"?viewStateShareKey={view}" if view else "")


def current_dataset() -> str | None:
    """The data set of the workspace: data/prepared/meta.json after `prepare`, else params.yaml."""
    meta = Path("data/prepared/meta.json")
    if meta.exists():
        return json.loads(meta.read_text())["dataset"]
    if Path("params.yaml").exists():
        from pipeline.datasets.load import dataset_label
        from pipeline.params import load_params

        return dataset_label(load_params().data)
    return None


SERVER_START_SECONDS = 600  # MLflow's server takes ~25 s to answer on a loaded 2-core machine


class UIError(Exception):
    """A `featurebench ui` problem the user fixes: the message is the one line they see."""


def listen_addresses(host: str, port: int) -> list[tuple]:
    """getaddrinfo's (family, address) pairs for `host`: what the server will bind."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UIError(f"cannot listen on --host {host} ({error.strerror}); give an address of this machine, e.g. 127.0.0.1") from None
    return [(family, address) for family, _, _, _, address in found]


def is_loopback(host: str) -> bool:
    """True when every address `host` names is this machine's loopback (127.0.0.1, ::1, localhost)."""
    import ipaddress

    return all(ipaddress.ip_address(address[0].split("%")[0]).is_loopback for _, address in listen_addresses(host, 0))


def port_in_use(host: str, port: int) -> bool:
    """True when a socket cannot bind `host`:`port` now, as the server would (SO_REUSEADDR, like uvicorn)."""
    family, address = listen_addresses(host, port)[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let the probe share a port in use
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def local_base(host: str, port: int) -> str:
    """The address this machine reaches the server at: a wildcard host is reached through loopback."""
    reach = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def wait_until_answering(base: str, server: subprocess.Popen, timeout: float = SERVER_START_SECONDS) -> None:
    """Return once `base` answers HTTP (any status); UIError if the server exits first or never answers."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/", timeout=5).close()
            break
        except urllib.error.HTTPError:
            break  # an HTTP status is an answer
        except OSError:
            pass
        if server.poll() is not None:
            raise UIError(f"the MLflow server exited (code {server.returncode}) before it answered; its messages are above")
        if time.monotonic() > deadline:
            raise UIError(f"the MLflow server did not answer at {base} within {timeout:.0f} s; its messages are above")
        time.sleep(0.25)
    if server.poll() is not None:  # what answered was another server that took the port meanwhile
        raise UIError(f"port {base.rsplit(':', 1)[1]} is in use; choose another with --port")


def open_in_browser(url: str) -> None:
    """Open `url` in the desktop's browser (no display: print only)."""
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return  # webbrowser would fall back to a text browser in this terminal
    webbrowser.open(url)


def stderr_fileno() -> int | None:
    """This process's stderr for a child's stdout; None (inherit) where stderr is no real file (an in-process test)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def command_ui(args) -> int:
    try:
        return serve_ui(args)
    except UIError as error:
        print(f"featurebench ui: error: {error}", file=sys.stderr)
        return 2


def serve_ui(args) -> int:
    """Start MLflow's UI on the store; print its address (and open it) only once it answers."""
    if not is_loopback(args.host):
        print(
            f"featurebench ui: warning: --host {args.host} makes the UI, and the MLflow store behind it (runs, models, "
            "artifacts), reachable from the network without authentication; use it only on a network you trust",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    if port_in_use(args.host, args.port):
        raise UIError(f"port {args.port} is in use; choose another with --port")
    uri = tracking.tracking_uri()
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    dataset = current_dataset()
    base, experiment_id = local_base(args.host, args.port), tracking.experiment_id(dataset) if dataset else None
    url = runs_table_url(base, experiment_id, tracking.COMPARISON_VIEW)
    print(f"starting the MLflow UI for {uri} on port {args.port} ...", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # `kill` of featurebench ui stops the server too
    # the server's own messages go to stderr: stdout carries only the address, once it answers
    server = subprocess.Popen(command, stdout=stderr_fileno())
    try:
        wait_until_answering(base, server)
        print(f"MLflow UI for {uri} at {url} (Ctrl-C stops it)", flush=True)
        if experiment_id:
            print(f"  every training run, best test accuracy first: {url}")
            print(f"  runs grouped by dvc repro / dvc exp run:      {runs_table_url(base, experiment_id)}", flush=True)
        if not args.no_browser:
            open_in_browser(url)
        return server.wait()
    except (KeyboardInterrupt, UIError) as stopped:
        server.terminate()
        code = server.wait()
        if isinstance(stopped, UIError):
            raise
        return code


def command_compare(args) -> int:
    """The comparison table of the runs DVC considers current, read back from MLflow."""
    from pipeline.compare import current_table, summary

    table, dataset = current_table()
    print(f"{dataset}: {len(table)} runs, best test accuracy first (the full report: reports/comparison.html)")
    print(summary(table).to_string(index=False))
    return 0


def command_predict(args) -> int:
    """One `PATH<tab>class` line per image; a file that cannot be read gets one line on stderr
    instead, the others are still classified, and the exit code is 1."""
    from pipeline.predict import predict_images

    unreadable = []

    def report(error) -> None:
        print(error, file=sys.stderr, flush=True)
        unreadable.append(error)

    for path, name in zip(args.images, predict_images(args.run_id, args.images, on_unreadable=report)):
        if name is not None:
            print(f"{path}\t{name}")
    return 1 if unreadable else 0


def sample_images(count: int = 24):
    """Real images to check an extractor on: the prepared train split if there is one, else shapes."""
    from pipeline.artifacts import MappedRows, images_path

    prepared = images_path("train")
    if prepared.exists():
        return MappedRows(prepared).slice(0, count), str(prepared)
    from pipeline.datasets.shapes import make_shapes

    return make_shapes(n_train=100, n_test=10, seed=0).train.images[:count], "shapes (seed 0)"


def command_extractor_list(args) -> int:
    """Each registered extractor, where it comes from, and the settings the pipeline extracts it with:
    params.yaml's `extractors:` entry over its defaults, or its defaults where params.yaml does not name
    it (then `dvc repro` does not extract it)."""
    import features

    configured = configured_extractors()
    for name in features.extractor_names():
        settings = configured.get(name)
        source = "params.yaml" if settings is not None else "defaults"
        try:
            params = features.get_extractor(name, **(settings or {})).get_params()
        except Exception as error:  # a plugin whose settings do not build still gets listed
            params = f"<cannot build with {source}: {error}>"
        print(f"{name:<16} {features.origin(name):<40} {source + ('' if settings is not None else ' (not in params.yaml)'):<30} {params}")
    for error in features.plugin_errors:
        print(f"! {error}")
    return 0


def configured_extractors() -> dict[str, dict]:
    """params.yaml's `extractors:` section in this folder ({} without one); a params.yaml that does not
    load is named in one line, and every extractor is then listed with its defaults."""
    if not Path("params.yaml").exists():
        return {}
    from pipeline.params import load_params

    try:
        return {name: dict(settings or {}) for name, settings in load_params().extractors.items()}
    except Exception as error:
        print(f"! params.yaml: {error}; listing each extractor's defaults", file=sys.stderr)
        return {}


def command_extractor_check(args) -> int:
    import features
    from features.contract import check_extractor
    from pipeline.params import load_params

    if args.name not in features.extractor_names():
        print(f"featurebench extractor check: unknown extractor {args.name!r}; see `featurebench extractor list`", file=sys.stderr)
        return 2
    configured = load_params().extractors.get(args.name, {}) if Path("params.yaml").exists() else {}
    images, source = sample_images()
    print(f"checking {args.name} ({features.origin(args.name)}) on {len(images)} images from {source}")
    checks = check_extractor(args.name, images, configured)
    for check in checks:
        print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    failed = sum(not check.passed for check in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def command_extractor_new(args) -> int:
    import features
    from features.registry import BUILT_IN
    from pipeline.scaffold import create

    written = create(Path.cwd(), args.name, args.fitted, features.extractor_names(), BUILT_IN)
    for path in written:
        print(f"wrote {path.relative_to(Path.cwd())}")
    print(f"next: fill in transform() in features/{args.name}.py, run `featurebench extractor check {args.name}`, then `dvc repro`")
    return 0


def command_extractor_use(args) -> int:
    import importlib.metadata

    import features
    from pipeline.scaffold import use_package_extractor

    origin = features.origin(args.name) if args.name in features.extractor_names() else ""
    if not origin.startswith("package "):
        print(f"featurebench extractor use: error: {args.name!r} is not provided by an installed package; see `featurebench extractor list`", file=sys.stderr)
        return 2
    package = origin.removeprefix("package ")
    written = use_package_extractor(
        Path.cwd(), args.name, package, importlib.metadata.version(package), features.get_extractor(args.name).get_params()
    )
    for path in written:
        print(f"wrote {path.relative_to(Path.cwd())}")
    print("next: `dvc repro` extracts it and trains every linear classifier on it")
    return 0


def command_extractor_remove(args) -> int:
    from features.registry import BUILT_IN
    from pipeline.scaffold import check_removable, pipeline_outputs, remove

    _, params = check_removable(Path.cwd(), args.name, BUILT_IN)  # a name it would refuse is refused before the question
    if not args.yes:
        outputs = [str(path.relative_to(Path.cwd())) for path in pipeline_outputs(Path.cwd(), args.name, params)]
        also = f", and what the pipeline wrote for it ({', '.join(outputs)})" if outputs else ""
        try:
            answer = input(f"delete features/{args.name}.py and tests/features/test_{args.name}.py{also}? [y/N] ")
        except EOFError:  # no terminal to answer from (stdin closed or /dev/null): no
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    removed = remove(Path.cwd(), args.name, BUILT_IN)
    for path in removed:
        print(f"{'updated' if path.name == 'params.yaml' else 'deleted'} {path.relative_to(Path.cwd())}")
    return 0


def command_study_list(args) -> int:
    from pipeline.studies.commands import study_rows

    rows = study_rows()
    print(f"{'study':<14} {'runs':>4}  {'time':<8} question")
    for name, question, runs, expected in rows:
        print(f"{name:<14} {runs:>4}  {expected:<8} {question}")
    print("runs: DVC experiments on top of the in-process toy problems; time: on the default shapes data, this 2-core machine")
    return 0


def command_study_run(args) -> int:
    from pipeline.studies.commands import run_study

    try:
        written, failed = run_study(args.name, args.data, args.set or [], args.points.split(",") if args.points else None, args.jobs)
    except KeyboardInterrupt:
        print(f"featurebench study run: interrupted; `featurebench study run {args.name}` again resumes (finished points are kept)", file=sys.stderr)
        return 130
    print(f"wrote {written[0]} ({len(written) - 1} figures)")
    if failed:
        print(f"featurebench study run: error: {len(failed)} point(s) failed: {', '.join(failed)}; "
              f"see `dvc queue logs NAME`, fix the cause and run the study again (finished points are kept)", file=sys.stderr)
        return 1
    return 0


def command_study_report(args) -> int:
    from pipeline.studies.commands import report_study

    written = report_study(args.name, args.data, args.set or [], args.points.split(",") if args.points else None)
    print(f"wrote {written[0]} ({len(written) - 1} figures)")
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
    ui.add_argument("--port", type=whole_number_in(1, 65535), default=5000, help="the port to serve on (default: %(default)s)")
    ui.add_argument("--no-browser", action="store_true", help="only print the address of the runs table")
    ui.set_defaults(handler=command_ui)

    extractor = commands.add_parser("extractor", help="add, list, check or remove feature extractors")
    extractor_commands = extractor.add_subparsers(dest="extractor_command", required=True)
    new = extractor_commands.add_parser("new", help="scaffold features/NAME.py and its test, and add NAME to params.yaml")
    new.add_argument("name", help="a lower-case Python identifier, e.g. mean_color")
    new.add_argument("--fitted", action="store_true", help="add a fit() that learns state from the train split")
    new.set_defaults(handler=command_extractor_new)
    listing = extractor_commands.add_parser("list", help="every registered extractor, where it comes from and the settings params.yaml gives it (else its defaults)")
    listing.set_defaults(handler=command_extractor_list)
    check = extractor_commands.add_parser("check", help="run the extractor contract on real sample images and say what to fix")
    check.add_argument("name")
    check.set_defaults(handler=command_extractor_check)
    use = extractor_commands.add_parser("use", help="put an extractor from an installed package into the pipeline (params.yaml and a version pin)")
    use.add_argument("name")
    use.set_defaults(handler=command_extractor_use)
    remove = extractor_commands.add_parser("remove", help="undo `extractor new`: delete the module and test, update params.yaml")
    remove.add_argument("name")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask before deleting code")
    remove.set_defaults(handler=command_extractor_remove)

    compare = commands.add_parser("compare", help="print the comparison table of the current runs, read back from MLflow")
    compare.set_defaults(handler=command_compare)

    predict = commands.add_parser("predict", help="classify image files with the model a training run logged to MLflow")
    predict.add_argument("run_id", help="the MLflow run id of a training stage (results/train/*/run.json, or the UI)")
    predict.add_argument("images", nargs="+", help="image files (any format Pillow reads; resized like the data set)")
    predict.set_defaults(handler=command_predict)

    study = commands.add_parser("study", help="the lecture's questions as sweeps of DVC experiments, with reports and figures")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    study_list = study_commands.add_parser("list", help="every study: what it asks, how many runs, expected time")
    study_list.set_defaults(handler=command_study_list)
    for verb, handler, text in (
        ("run", command_study_run, "run a study's points as queued DVC experiments (finished points are skipped) and write its report"),
        ("report", command_study_report, "rewrite reports/studies/NAME.md from the experiments DVC holds"),
    ):
        sub = study_commands.add_parser(verb, help=text)
        sub.add_argument("name", help="a study from `featurebench study list`")
        sub.add_argument("--data", help="shapes, cifar10, or a folder/archive of class folders (imagefolder); default: params.yaml")
        sub.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="extra override for every point, e.g. mlp.epochs=5")
        sub.add_argument("--points", help="only these points, comma-separated labels (see the report's table)")
        if verb == "run":
            sub.add_argument("-j", "--jobs", type=whole_number_in(1, 64), default=1, help="experiments run at once (default: %(default)s)")
        sub.set_defaults(handler=handler)
    return parser


def whole_number_in(lowest: int, highest: int):
    """An argparse type: a whole number from lowest to highest, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not lowest <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be from {lowest} to {highest}, got {value}")
        return value

    return parse


REEXEC_MARK = "FEATUREBENCH_CLI_OF_PROJECT"


def run_the_project_s_own_cli(argv: list[str] | None) -> None:
    """In another checkout of the project than the one installed (a second clone, a branch), run that
    checkout's `featurebench`, as its DVC stages run its code: this module was imported from the
    installed one before any path could be changed. POSIX only (os.execv); once per command; only for the
    command as typed (argv None): a caller of main(argv) in its own process keeps that process."""
    if argv is not None:
        return
    project = Path.cwd()
    installed = Path(__file__).resolve().parents[1]
    if os.environ.pop(REEXEC_MARK, None) or os.name == "nt" or not (project / "pipeline" / "cli.py").is_file():
        return  # the mark is this process's own: commands it starts decide for themselves
    if project.resolve() == installed:
        return
    os.environ[REEXEC_MARK] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "pipeline.cli", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    run_the_project_s_own_cli(argv)
    args = build_parser().parse_args(argv)
    if (Path.cwd() / "features" / "__init__.py").exists():
        # the project in the working directory wins, as it does for `python -m` in DVC stages
        sys.path.insert(0, str(Path.cwd()))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from pipeline.stage import user_errors

    try:
        return args.handler(args)
    except user_errors() as error:  # the stages' user errors (bad params or YAML, data, names, a read-only store): one line, exit 2
        command = " ".join(filter(None, [args.command, getattr(args, "extractor_command", None), getattr(args, "study_command", None)]))
        print(f"featurebench {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
