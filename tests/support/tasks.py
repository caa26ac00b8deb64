"""Tiny task functions for executor tests, importable by worker processes."""

from __future__ import annotations

__all__ = ["square"]


def square(x: int) -> int:
    """``x * x``."""
    return x * x
