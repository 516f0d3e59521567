"""Readable numbers: thousands separators, binary byte units, FLOP prefixes. Used by the engine's own worked
lines and by every formatter (the CLI tables and CSV re-export these)."""

from __future__ import annotations

from collections.abc import Sequence


def format_count(value: int | float | None) -> str:
    """62378344 -> '62,378,344'."""
    if value is None:
        return "-"
    return f"{int(value):,}"


def short_count(value: int | float | None) -> str:
    """62378344 -> '62.4M', 8030261248 -> '8.03B', 22401 -> '22.4k'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("", "k", "M", "B", "T"):
        if abs(size) < 1000 or unit == "T":
            if unit == "":
                return f"{int(size):,}"
            return f"{size:.3g}{unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_bytes(value: int | float | None) -> str:
    """Binary units, always with the unit: 1,244.4 MiB, 2.00 GiB, 512 B."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    size = float(abs(value))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(size):,} B"
            return f"{sign}{size:,.1f} {unit}" if size >= 100 else f"{sign}{size:,.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_flops(value: int | float | None) -> str:
    """4541024384 -> '4.54 GFLOPs'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(size) < 1000 or unit == "P":
            return f"{size:,.0f} FLOPs" if unit == "" else f"{size:,.2f} {unit}FLOPs"
        size /= 1000
    raise AssertionError("unreachable")


def format_shape(shape: Sequence[int] | None) -> str:
    """[2, 96, 55, 55] -> '2 x 96 x 55 x 55'."""
    if not shape:
        return "-"
    return " x ".join(str(s) for s in shape)
