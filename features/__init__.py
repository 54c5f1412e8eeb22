"""Feature extractors: `get_extractor(name, **params)` builds one; importing this package registers the built-ins."""
from features.base import FeatureExtractor, NotFittedError
from features.registry import extractor_class, extractor_names, get_extractor, register
from features import bovw, color_hist, hog, pixels  # noqa: F401  (registration side effect)

__all__ = ["FeatureExtractor", "NotFittedError", "extractor_class", "extractor_names", "get_extractor", "register"]
