"""Readable numbers for the formatters; one implementation, in the engine (its worked lines use it too)."""

from ..engine.units import format_bytes, format_count, format_flops, format_shape, short_count

__all__ = ["format_bytes", "format_count", "format_flops", "format_shape", "short_count"]
