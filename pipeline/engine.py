"""Where the parallel parts of a stage run: in this process (`engine: local`) or on Ray (`engine: ray`).

One code path for both: a stage hands `map_in_order` a function, the items to map it over (image
shards, search trials) and the state every call shares (a fitted extractor, the training rows); the
results come back in the items' order, so the output does not depend on the engine or the timing.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from pipeline.params import ENGINES

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_order(
    function: Callable[[object, Item], Result],
    items: Iterable[Item],
    *,
    shared: object = None,
    engine: str = "local",
) -> Iterator[Result]:
    """Yield function(shared, item) for every item, in the items' order."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "ray":
        raise NotImplementedError("engine: ray is not built yet")
    for item in items:
        yield function(shared, item)
