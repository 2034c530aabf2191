"""The "aha moment" of a run: the first step after which response length and accuracy rise together, and the
evidence for it.

TinyZero's claim is that from 1.5B parameters up the model starts to search, check and revise, and that this
shows as responses that grow longer while they get right more often. `detect` looks for exactly that in the
per-step training series (one mean over every sample of a step), by a rule stated in full so that a reader can
check it against the curves:

    A stretch is K consecutive windows of W steps. Least-squares lines are fitted to response length against
    step and to accuracy against step. The stretch shows the aha when
      - over the whole stretch, both slopes are positive with a t-statistic (slope / its standard error) of at
        least T: the rise is not noise;
      - in its first window, both slopes are positive with t of at least 1: the rise has begun there;
      - every later window's mean length and mean accuracy are above the first window's, the last one's by at
        least 10 % (length) and 0.02 (accuracy): the gain is kept, and is more than a drift.
    Stretches are tried from the first step logged, then every W/5 steps; the aha step is the first step of the
    first stretch that shows it. None shows it: "not found".

W is 1/20 of the steps the series span, kept within 20..50; K = 3 and T = 2. A first window with fewer than half
its steps logged never counts as rising. The evidence kept is the stretch that showed the aha or, when none did, the one
that came closest (the largest of its two stretch-wide t-statistics' smaller one).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import asdict, dataclass, field

SUSTAIN = 3  # K: windows in a stretch
T_MIN = 2.0  # T: least t-statistic of each slope over the stretch
WINDOW_T_MIN = 1.0  # least t-statistic of each slope in a stretch's first window
MIN_LENGTH_RISE = 0.10  # relative, first window's mean length to the last's
MIN_ACCURACY_RISE = 0.02  # absolute
STEPS_PER_WINDOW = 20  # W is the steps spanned divided by this...
WINDOW_BOUNDS = (20, 50)  # ...kept within these
GRID = 5  # stretches start every W / GRID steps


@dataclass
class Fit:
    """Steps [start, end], the points logged in them, and the two fitted lines (slopes per step)."""

    start: int
    end: int
    points: int
    length_mean: float
    length_slope: float
    length_t: float
    accuracy_mean: float
    accuracy_slope: float
    accuracy_t: float


@dataclass
class Aha:
    """What `detect` found: the step (None when not found), the rule with its parameters, the evidence (the
    stretch's windows and the fit over the whole stretch) and a sentence saying why."""

    found: bool
    step: int | None
    rule: str
    reason: str
    window: int
    sustain: int
    t_min: float
    windows: list[Fit] = field(default_factory=list)
    stretch: Fit | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Series:
    """Per-step length and accuracy on their common steps, with running sums: any range's fit in O(1)."""

    def __init__(self, length: dict[int, float], accuracy: dict[int, float]):
        self.steps = sorted(length.keys() & accuracy.keys())
        origin = self.steps[0] if self.steps else 0
        xs = [s - origin for s in self.steps]  # centred on the first step: small numbers, exact sums
        self.origin = origin
        self.sums = {
            name: [0.0, *itertools.accumulate(values)]
            for name, values in {
                "x": xs,
                "xx": [x * x for x in xs],
                "l": [length[s] for s in self.steps],
                "ll": [length[s] ** 2 for s in self.steps],
                "xl": [x * length[s] for x, s in zip(xs, self.steps, strict=True)],
                "a": [accuracy[s] for s in self.steps],
                "aa": [accuracy[s] ** 2 for s in self.steps],
                "xa": [x * accuracy[s] for x, s in zip(xs, self.steps, strict=True)],
            }.items()
        }

    def fit(self, start: int, size: int) -> Fit:
        """Both lines over steps [start, start + size)."""
        i, j = bisect.bisect_left(self.steps, start), bisect.bisect_left(self.steps, start + size)
        total = {name: sums[j] - sums[i] for name, sums in self.sums.items()}
        n = j - i
        length_slope, length_t = line(n, total["x"], total["xx"], total["l"], total["ll"], total["xl"])
        accuracy_slope, accuracy_t = line(n, total["x"], total["xx"], total["a"], total["aa"], total["xa"])
        return Fit(
            start=start,
            end=start + size - 1,
            points=n,
            length_mean=total["l"] / n if n else math.nan,
            length_slope=length_slope,
            length_t=length_t,
            accuracy_mean=total["a"] / n if n else math.nan,
            accuracy_slope=accuracy_slope,
            accuracy_t=accuracy_t,
        )


def line(n: int, sx: float, sxx: float, sy: float, syy: float, sxy: float) -> tuple[float, float]:
    """Least-squares slope of y on x from the sums of n points, and its t-statistic (slope / standard error);
    (0, 0) for fewer than 3 points or no spread in x. A perfect line has an infinite t, signed as its slope."""
    if n < 3:
        return 0.0, 0.0
    cxx = sxx - sx * sx / n
    if cxx <= 0:
        return 0.0, 0.0
    slope = (sxy - sx * sy / n) / cxx
    residual = max(0.0, (syy - sy * sy / n) - slope * slope * cxx)
    se = math.sqrt(residual / (n - 2) / cxx)
    if se <= 1e-12 * max(1.0, abs(slope)):
        return slope, math.copysign(math.inf, slope) if slope else 0.0
    return slope, slope / se


def window_size(steps: list[int]) -> int:
    """W: 1/20 of the steps the series span, within 20..50."""
    lo, hi = WINDOW_BOUNDS
    span = steps[-1] - steps[0] + 1 if steps else 0
    return max(lo, min(hi, round(span / STEPS_PER_WINDOW)))


def rule_text(size: int, sustain: int, t_min: float) -> str:
    return (
        f"a stretch is {sustain} consecutive windows of {size} steps; it shows the aha when the least-squares slopes "
        f"of response length and of accuracy against step are both positive over the stretch with t >= {t_min:g} "
        f"and in its first window with t >= {WINDOW_T_MIN:g}, and every later window's mean length and accuracy are "
        f"above the first window's, the last one's by at least {MIN_LENGTH_RISE:.0%} and {MIN_ACCURACY_RISE:g}; "
        f"stretches are tried every {max(1, size // GRID)} steps from the first, and the aha step is where the "
        "first one that shows it starts"
    )


def shows(windows: list[Fit], stretch: Fit, size: int, t_min: float) -> bool:
    """Whether a stretch (its windows and its whole fit) meets the rule. A t-statistic has its slope's sign, so a
    least t above zero is a positive slope."""
    first, later = windows[0], windows[1:]
    significant = min(stretch.length_t, stretch.accuracy_t) >= t_min
    begun = first.points * 2 >= size and min(first.length_t, first.accuracy_t) >= WINDOW_T_MIN
    kept = all(w.length_mean > first.length_mean and w.accuracy_mean > first.accuracy_mean for w in later)
    last = windows[-1]
    grown = last.length_mean >= first.length_mean * (1 + MIN_LENGTH_RISE)
    return significant and begun and kept and grown and last.accuracy_mean - first.accuracy_mean >= MIN_ACCURACY_RISE


def detect(
    length: dict[int, float],
    accuracy: dict[int, float],
    *,
    window: int | None = None,
    sustain: int = SUSTAIN,
    t_min: float = T_MIN,
) -> Aha:
    """The aha step of per-step series {step: mean response length} and {step: accuracy}, by the module's rule."""
    series = Series(length, accuracy)
    steps = series.steps
    size = window or window_size(steps)
    result = Aha(False, None, rule_text(size, sustain, t_min), "", size, sustain, t_min)
    if not steps or steps[-1] - steps[0] + 1 < sustain * size:
        result.reason = (
            f"too few steps: {len(steps)} steps with both length and accuracy, the rule needs {sustain * size}"
        )
        return result
    closest = -math.inf
    for start in range(steps[0], steps[-1] - sustain * size + 2, max(1, size // GRID)):
        windows = [series.fit(start + k * size, size) for k in range(sustain)]
        stretch = series.fit(start, sustain * size)
        if shows(windows, stretch, size, t_min):
            result.found, result.step, result.windows, result.stretch = True, start, windows, stretch
            result.reason = (
                f"over steps {start}-{stretch.end}, length {windows[0].length_mean:.4g} -> "
                f"{windows[-1].length_mean:.4g} and accuracy {windows[0].accuracy_mean:.3f} -> "
                f"{windows[-1].accuracy_mean:.3f}, both rising with t = {stretch.length_t:.1f} and "
                f"{stretch.accuracy_t:.1f}"
            )
            return result
        weaker = min(stretch.length_t, stretch.accuracy_t)
        if result.stretch is None or weaker > closest:  # a perfect line has t = -inf: still a stretch to show
            closest, result.windows, result.stretch = weaker, windows, stretch
    result.reason = (
        f"no stretch of {sustain * size} steps where length and accuracy rise together; the closest (shown) is "
        f"steps {result.stretch.start}-{result.stretch.end}"
    )
    return result
