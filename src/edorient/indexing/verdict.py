"""An answer that knows when it is wrong: ``confident``, ``ambiguous`` or ``no match`` per grain.

Two numbers decide, both from the template search (the same objective on simulated and real
patterns, so thresholds measured on one carry over to the other):

- the **score**: the normalised correlation of the best solution's pattern with the image.
  Pure noise, another crystal, or a pattern that is not a zone of this crystal scores low;
- the **margin**: the score of the best solution minus that of the best *distinct* solution
  (another zone, more than a few degrees away modulo the Laue group). Two zones that fit about
  equally make the label a coin toss.

The thresholds below were measured by ``benchmarks/bench_verdict.py`` (figures, the command and
the machine in docs/results.md, "Verdict"): ``NO_MATCH_SCORE`` sits above the best scores of pure
noise and of patterns of another crystal, ``MIN_MARGIN`` is the smallest margin above which fewer
than 1 % of simulated grains were more than 2° off.
"""

from __future__ import annotations

#: Below this best score the grain is ``no match``.
NO_MATCH_SCORE = 0.30
#: Below this margin over the runner-up the grain is ``ambiguous``.
MIN_MARGIN = 0.02
#: A second grain whose score on the pattern with the first grain's spots erased is below this
#: is not reported as a real grain.
SECOND_GRAIN_SCORE = 0.30

VERDICTS = ("confident", "ambiguous", "no match")


def verdict(score: float, margin: float, no_match_score: float = NO_MATCH_SCORE,
            min_margin: float = MIN_MARGIN) -> str:
    """``no match`` below ``no_match_score``, else ``ambiguous`` below ``min_margin``, else ``confident``.

    >>> verdict(0.8, 0.1), verdict(0.8, 0.001), verdict(0.1, 0.5)
    ('confident', 'ambiguous', 'no match')
    """
    if not score >= no_match_score:  # NaN counts as no match
        return "no match"
    if margin < min_margin:
        return "ambiguous"
    return "confident"
