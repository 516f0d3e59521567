"""Formatting of engine reports: numbers with units, text tables, CSV. No web imports."""

from .units import format_bytes, format_count, format_flops, format_shape

__all__ = ["format_bytes", "format_count", "format_flops", "format_shape"]
