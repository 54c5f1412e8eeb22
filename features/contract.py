"""The extractor contract as checks that say what to fix; the test suite and `featurebench extractor check` share them."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from features.base import NotFittedError
from features.registry import extractor_class, get_extractor


class ContractError(Exception):
    """A point of the contract an extractor breaks; the message says what to fix.

    Raised explicitly, never through `assert`, so that `python -O` (which strips asserts) checks as much.
    """


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _outcome(name: str, function) -> Check:
    try:
        detail = function()
    except ContractError as failure:
        return Check(name, False, str(failure))
    except Exception as error:  # a broken extractor may raise anything; the report must still finish
        return Check(name, False, f"raised {type(error).__name__}: {error}")
    return Check(name, True, detail or "ok")


def check_extractor(name: str, images: np.ndarray, params: dict | None = None) -> list[Check]:
    """Run every point of the contract on `images` (uint8 (n, H, W, 3), n >= 2); one Check per point."""
    params = params or {}
    checks: list[Check] = []
    state: dict = {}

    def builds():
        state["extractor"] = get_extractor(name, **params)
        return repr(state["extractor"])

    checks.append(_outcome("builds from its params", builds))
    if not checks[-1].passed:
        return checks
    extractor = state["extractor"]
    cls = extractor_class(name)

    def params_are_json():
        try:
            text = json.dumps(extractor.get_params())
        except TypeError as error:
            raise ContractError(f"get_params() is not JSON-serializable ({error}); keep hyperparameters to numbers, strings, lists and dicts") from None
        return text

    checks.append(_outcome("params are JSON-serializable", params_are_json))

    if cls.fitted:

        def refuses_before_fit():
            try:
                get_extractor(name, **params).transform(images[:2])
            except NotFittedError:
                return "raises NotFittedError"
            raise ContractError("transform() before fit() must raise features.NotFittedError; check for the learned attribute first")

        checks.append(_outcome("refuses transform before fit", refuses_before_fit))

    def fit_returns_self():
        fitted = extractor.fit(images)
        if fitted is not extractor:
            raise ContractError(f"fit() returned {type(fitted).__name__}; end fit() with `return self`")

    checks.append(_outcome("fit returns itself", fit_returns_self))
    if not checks[-1].passed:
        return checks

    def shape_and_dtype():
        out = extractor.transform(images)
        state["out"] = out
        if not isinstance(out, np.ndarray):
            raise ContractError(f"transform() returned {type(out).__name__}; return a numpy array")
        expected = (len(images), extractor.output_dim(images.shape[1:]))
        if out.shape != expected:
            raise ContractError(f"output shape {out.shape}, expected (n, output_dim) = {expected}; make output_dim() and transform() agree")
        if out.dtype != np.float32:
            raise ContractError(f"output dtype {out.dtype}; return `features.astype(np.float32)`")
        return f"{out.shape} float32"

    checks.append(_outcome("output shape (n, d) and dtype float32", shape_and_dtype))
    if "out" not in state:
        return checks
    out = np.asarray(state["out"])

    def finite():
        bad = ~np.isfinite(out)
        if bad.any():
            raise ContractError(f"{bad.any(axis=1).sum()} of {len(out)} images give NaN or infinite values; guard divisions (add a small epsilon) and logs")

    checks.append(_outcome("finite values", finite))

    def deterministic():
        again = extractor.transform(images)
        if not np.array_equal(np.asarray(again), out, equal_nan=True):  # NaN is the finite check's to report
            raise ContractError("a second transform() of the same images differs; seed any randomness and keep no state across calls")

    checks.append(_outcome("same output for the same input", deterministic))

    def batch_independent():
        rows = np.concatenate([np.asarray(extractor.transform(images[i : i + 1])) for i in range(len(images))])
        worst = float(np.nanmax(np.abs(rows - out), initial=0.0)) if rows.shape == out.shape else float("inf")
        if not (rows.shape == out.shape and np.allclose(rows, out, rtol=1e-5, atol=1e-6, equal_nan=True)):
            raise ContractError(
                f"rows differ when images come one at a time (largest difference {worst:.3g}); "
                "compute each image's features from that image alone (no statistics over the batch)"
            )

    checks.append(_outcome("same rows one at a time or in a batch", batch_independent))
    return checks
