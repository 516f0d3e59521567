"""The largest size (a batch, a context) whose exact peak fits a budget, in as few estimates as the peak allows.

A step's peak is affine in its batch and, in most models, in its sequence length
(weights and optimizer state stay; activations and the KV cache grow linearly). Two
estimates draw the line; a third, at the largest size the line says fits, checks it:
when that estimate lies exactly on the line (integer bytes), the line is the peak
there and one past it, and the answer took three estimates. When it does not (an
attention that grows with the square of the length, a kernel that changes with the
size), the parabola through the three is checked the same way by a fourth (attention
that keeps a length x length score grows so); failing both, the search goes on with
estimates only: secant steps from the two closest sizes, then bisection, and the size
past the answer is estimated too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass
class Fit:
    """The answer: ``size`` fits (0: not even ``low``), ``size + 1`` does not (or ``size`` is ``high``)."""

    size: int
    peak: int | None  # the peak at size (None when nothing fits)
    next_peak: int | None  # the peak at size + 1 (None at the upper limit)
    next_from_line: bool  # next_peak is the checked line's value, not an estimate
    affine: bool  # the third estimate lay on the line through the first two
    peaks: dict[int, int] = field(default_factory=dict)  # every estimate taken: size -> peak
    curve: str = "line"  # what the checked estimates lay on: a line, or a parabola through three
    through: tuple[int, ...] = ()  # the sizes that drew it


def largest_fitting(peak: Callable[[int], int], budget: int, low: int, high: int, first: int, second: int) -> Fit:
    """The largest size in [low, high] whose ``peak(size)`` is at most ``budget``, assuming the peak grows with
    the size. The first line is drawn through ``first`` and ``second`` (sizes past the smallest ones, whose
    peaks can differ in kind: batch 1, a prompt short enough that a decode step holds the peak); ``low`` is
    estimated only when ``first`` does not fit."""
    peaks: dict[int, int] = {}

    def at(size: int) -> int:
        if size not in peaks:
            peaks[size] = peak(size)
        return peaks[size]

    first = min(max(first, low), high)
    if at(first) > budget and (first == low or at(low) > budget):
        return Fit(0, None, peaks.get(low), False, False, peaks)
    if high == low:
        return Fit(low, peaks[low], None, False, False, peaks)
    if first < high:
        at(min(max(second, first + 1), high))
    elif peaks[first] <= budget:
        return Fit(first, peaks[first], None, False, False, peaks)
    for _ in range(3):  # a line through the two estimates nearest the answer, checked by a third
        fit = _line_fit(at, peaks, budget, low, high)
        if fit is not None:
            return fit
        if len(peaks) == 3:
            curve = _quadratic_fit(at, peaks, budget, low, high)
            if curve is not None:
                return curve
    return _search(at, peaks, budget, low, high)


def _nearest_pair(peaks: dict[int, int], budget: int) -> tuple[int, int]:
    """The largest size that fits and the smallest that does not; the two largest that fit when none fails."""
    fitting = sorted(size for size, value in peaks.items() if value <= budget)
    failing = sorted(size for size, value in peaks.items() if value > budget)
    return (fitting[-1], failing[0]) if failing else (fitting[-2], fitting[-1])


def _line_fit(at: Callable[[int], int], peaks: dict[int, int], budget: int, low: int, high: int) -> Fit | None:
    first, second = _nearest_pair(peaks, budget)
    slope = Fraction(peaks[second] - peaks[first], second - first)
    if slope <= 0:
        return None
    line = lambda size: peaks[first] + slope * (size - first)  # noqa: E731
    guess = min(high, first + int((budget - peaks[first]) / slope))
    if peaks.get(second, budget + 1) > budget:
        guess = min(guess, second - 1)
    if guess in peaks:  # the line's answer is one of its own points: the size past it decides
        if peaks[guess] <= budget and guess < high and at(guess + 1) > budget:
            return Fit(guess, peaks[guess], peaks[guess + 1], False, False, peaks)
        return None
    if at(guess) != line(guess) or peaks[guess] > budget:
        return None
    if guess == high:
        return Fit(guess, peaks[guess], None, False, True, peaks, through=(first, second))
    following = line(guess + 1)
    if following.denominator != 1 or following <= budget:
        return None
    return Fit(guess, peaks[guess], int(following), True, True, peaks, through=(first, second))


def _quadratic_fit(at: Callable[[int], int], peaks: dict[int, int], budget: int, low: int, high: int) -> Fit | None:
    """Where three estimates are known and not on a line, the parabola through them (attention that keeps a
    length x length score grows so), checked the same way by a fourth at its answer."""
    (x0, y0), (x1, y1), (x2, y2) = sorted(peaks.items())
    # Newton's divided differences, exact
    d01, d12 = Fraction(y1 - y0, x1 - x0), Fraction(y2 - y1, x2 - x1)
    a = (d12 - d01) / (x2 - x0)
    curve = lambda x: y0 + d01 * (x - x0) + a * (x - x0) * (x - x1)  # noqa: E731
    if a <= 0 or curve(low) > budget:
        return None
    fitting, failing = low, high + 1  # the largest x with curve(x) <= budget, by bisection on the parabola
    while failing - fitting > 1:
        middle = (fitting + failing) // 2
        fitting, failing = (middle, failing) if curve(middle) <= budget else (fitting, middle)
    if fitting in peaks or at(fitting) != curve(fitting) or peaks[fitting] > budget:
        return None
    if fitting == high:
        return Fit(fitting, peaks[fitting], None, False, True, peaks, curve="parabola", through=(x0, x1, x2))
    following = curve(fitting + 1)
    if following.denominator != 1 or following <= budget:
        return None
    return Fit(fitting, peaks[fitting], int(following), True, True, peaks, curve="parabola", through=(x0, x1, x2))


def _search(at: Callable[[int], int], peaks: dict[int, int], budget: int, low: int, high: int) -> Fit:
    """Bracket with what is known, close in by secant steps, finish by bisection; every figure is an estimate."""
    fitting = max(size for size, value in peaks.items() if value <= budget)
    over = [size for size, value in peaks.items() if value > budget]
    failing = min(over) if over else high + 1
    while failing - fitting > 1:
        left, right = fitting, failing if failing <= high else None
        if right is not None and peaks[right] > peaks[left]:  # secant between the bracket's ends
            step = (budget - peaks[left]) * (right - left) // (peaks[right] - peaks[left])
            probe = min(right - 1, max(left + 1, left + step))
        elif right is None:  # nothing fails yet: double towards the limit
            probe = min(high, max(left + 1, 2 * left))
        else:
            probe = (left + right) // 2
        if probe in peaks and left < probe < (right or high + 1):
            probe = (left + (right or high + 1)) // 2
        if at(probe) <= budget:
            fitting = probe
        else:
            failing = probe
        if right is not None and failing - fitting > 1 and len(peaks) % 3 == 0:  # secant stalls: bisect once
            middle = (fitting + failing) // 2
            if at(middle) <= budget:
                fitting = middle
            else:
                failing = middle
    following = at(fitting + 1) if fitting < high else None
    return Fit(fitting, peaks[fitting], following, False, False, peaks)


def fit_note(fit: Fit, what: str) -> str:
    """How the answer was found, for a report's notes (``what``: "batch size", "prompt length")."""
    if fit.size == 0:
        return f"1 estimate: the smallest {what} already passes the budget"
    drawn = ", ".join(f"{size:,}" for size in fit.through)
    if fit.next_from_line:
        return (
            f"{len(fit.peaks)} estimates: the {what}s {drawn} drew a {fit.curve} and the estimate at {fit.size:,} "
            f"lies on it exactly, so the peak follows it there and the peak at {fit.size + 1:,} is the {fit.curve}'s"
        )
    if fit.affine:
        return f"{len(fit.peaks)} estimates: the {fit.curve} through the {what}s {drawn} was checked at the limit"
    return (
        f"{len(fit.peaks)} estimates: the peak follows no line or parabola in the {what} here, so the answer and "
        f"the {what} past it were estimated"
    )
