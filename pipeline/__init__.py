"""Thin DVC stage entry points and the glue they share (params, tracking, atomic I/O)."""
