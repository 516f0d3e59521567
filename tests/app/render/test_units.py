from __future__ import annotations

import pytest

from app.render.units import format_bytes, format_count, format_flops, format_shape, short_count


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.50 KiB"), (1000 * 2**20, "1,000.0 MiB"), (4 * 2**30, "4.00 GiB")],
)
def test_bytes_always_carry_a_unit(value: float, text: str) -> None:
    assert format_bytes(value) == text


def test_counts_flops_shapes() -> None:
    assert format_count(62_378_344) == "62,378,344"
    assert short_count(62_378_344) == "62.4M" and short_count(8_030_261_248) == "8.03B" and short_count(999) == "999"
    assert format_flops(4_541_024_384) == "4.54 GFLOPs" and format_flops(12) == "12 FLOPs"
    assert format_shape([2, 96, 55, 55]) == "2 x 96 x 55 x 55" and format_shape(None) == "-"
