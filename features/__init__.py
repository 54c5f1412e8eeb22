"""Feature extractors: `get_extractor(name, **params)` builds one.

Importing this package registers the built-ins, every extractor module in this folder, and the
extractors installed packages declare under the `featurebench.extractors` entry-point group.
"""
from features.base import FeatureExtractor, NotFittedError
from features.registry import (
    discover_packages,
    discover_repository_modules,
    extractor_class,
    extractor_names,
    get_extractor,
    origin,
    plugin_errors,
    register,
)

discover_repository_modules()
discover_packages()

__all__ = ["FeatureExtractor", "NotFittedError", "extractor_class", "extractor_names", "get_extractor", "origin", "plugin_errors", "register"]
