"""Name-keyed registry of feature extractors, filled by the `@register` decorator."""
from __future__ import annotations

from typing import Callable

from features.base import FeatureExtractor

_EXTRACTORS: dict[str, type[FeatureExtractor]] = {}


def register(name: str) -> Callable[[type[FeatureExtractor]], type[FeatureExtractor]]:
    """Class decorator; a second class under the same name is an error, never a silent overwrite."""
    if not name.isidentifier():
        raise ValueError(f"extractor name must be a Python identifier; got {name!r}")

    def decorate(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        existing = _EXTRACTORS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"extractor {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        cls.name = name
        _EXTRACTORS[name] = cls
        return cls

    return decorate


def get_extractor(name: str, **params) -> FeatureExtractor:
    """A new extractor of the registered class `name`, built with `params`."""
    try:
        cls = _EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown extractor {name!r}; registered: {', '.join(sorted(_EXTRACTORS))}") from None
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for extractor {name!r}: {error}") from None


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def extractor_class(name: str) -> type[FeatureExtractor]:
    return _EXTRACTORS[name]
