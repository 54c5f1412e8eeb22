"""Name-keyed registry of feature extractors, filled by `@register`, repository modules and installed packages."""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
from typing import Callable

from features.base import FeatureExtractor

BUILT_IN = ("pixels", "color_hist", "hog", "bovw")
ENTRY_POINT_GROUP = "featurebench.extractors"
NOT_EXTRACTOR_MODULES = {"base", "registry", "contract", "kmeans", "figures", "triangle_codes", "compiled"}  # the package's own helpers

_EXTRACTORS: dict[str, type[FeatureExtractor]] = {}
_PACKAGES: dict[str, str] = {}
plugin_errors: list[str] = []


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
        hint = "".join(f"\n  {error}" for error in plugin_errors)
        raise ValueError(f"unknown extractor {name!r}; registered: {', '.join(sorted(_EXTRACTORS))}{hint}") from None
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for extractor {name!r}: {error}") from None


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def extractor_class(name: str) -> type[FeatureExtractor]:
    return _EXTRACTORS[name]


def origin(name: str) -> str:
    """Where an extractor comes from: built in, this repository, or an installed package."""
    if name in BUILT_IN:
        return "built in"
    if name in _PACKAGES:
        return f"package {_PACKAGES[name]}"
    return f"this repository (features/{_EXTRACTORS[name].__module__.rsplit('.', 1)[-1]}.py)"


def _report(message: str) -> None:
    plugin_errors.append(message)
    print(f"featurebench: warning: {message}", file=sys.stderr)


def discover_repository_modules() -> None:
    """Import every extractor module in features/, so `featurebench extractor new` needs no import list."""
    import features

    for module in pkgutil.iter_modules(features.__path__):
        if module.name in NOT_EXTRACTOR_MODULES or module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"features.{module.name}")
        except Exception as error:  # one broken file must not take the others down
            _report(f"features/{module.name}.py failed to import: {type(error).__name__}: {error}")


def discover_packages() -> None:
    """Register extractors that installed packages declare in the `featurebench.extractors` entry-point group.

    An entry point `NAME = module:Class` registers Class under NAME (a class already decorated with
    `@register(NAME)` is fine too).
    """
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = entry_point.dist.name if entry_point.dist else entry_point.value.split(":")[0]
        try:
            loaded = entry_point.load()
            if not (isinstance(loaded, type) and issubclass(loaded, FeatureExtractor)):
                raise TypeError(f"{entry_point.value} is not a FeatureExtractor subclass")
            register(entry_point.name)(loaded)
        except Exception as error:
            _report(f"extractor plugin {entry_point.name!r} from package {package} failed to load: {type(error).__name__}: {error}")
            continue
        _PACKAGES[entry_point.name] = package
