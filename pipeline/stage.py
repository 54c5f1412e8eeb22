"""What every stage entry point shares: a clear one-line error instead of a traceback wall."""
from __future__ import annotations

import atexit
import gc
import sys
from typing import Callable

from pipeline.datasets import DataError
from pipeline.params import ParamsError

# Errors a user can cause and fix (bad params or YAML, data, names, a read-only MLflow store or output
# folder); their messages name the problem and the fix. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, ParamsError, ValueError, FileNotFoundError, PermissionError, FloatingPointError)


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS, and the tracking module's StoreError when the stage loaded it: only then can it be
    raised, and importing it here would make every stage depend on tracking.py in dvc.yaml."""
    tracking = sys.modules.get("pipeline.tracking")
    return USER_ERRORS + ((tracking.StoreError,) if tracking else ())


def run_stage(main: Callable[[], None], name: str) -> None:
    """Run `main`; a user error prints `featurebench NAME: error: ...` and exits 2, Ctrl-C exits 130."""
    # Registered before anything the stage sets up, so it runs after their exit handlers (MLflow's, tqdm's, temporary files'):
    # the objects alive then are never collected at shutdown, whose final collection walks everything
    # torch, torch.export and MLflow imported (about a second per stage). The process ends right after.
    atexit.register(gc.freeze)
    try:
        main()
    except user_errors() as error:
        print(f"featurebench {name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"featurebench {name}: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
