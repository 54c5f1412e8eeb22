"""What a test needs from outside the repository (the shared CIFAR-10 archive, a browser): skipped where
it is missing on a developer's machine, a failure in CI, so that CI cannot pass by running less."""
from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required(variable: str) -> bool:
    """True in CI (CI=true, as GitHub Actions and GitLab set it) or where `variable`=1 asks for it (.ci/run)."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(variable) == "1"


def missing(what: str, fix: str, variable: str) -> NoReturn:
    """End the test: fail when `variable` or CI requires `what`, skip otherwise; `fix` says how to get it."""
    if required(variable):
        pytest.fail(f"{what} is missing; {fix} (required here: CI=true or {variable}=1)", pytrace=False)
    pytest.skip(f"{what} is missing; {fix}")
