"""A plugin module that fails to import, as a half-installed package would."""
raise ImportError("this module needs a library that is not installed")
