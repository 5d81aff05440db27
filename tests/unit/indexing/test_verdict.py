"""The verdict's reasons: one sentence per failed check, consistent with the verdict itself."""

from __future__ import annotations

import itertools

import numpy as np

from edorient.indexing import verdict as vd


def test_the_reasons_name_every_failed_check_and_only_those():
    scores = [0.1, 0.8]
    fits = [0.2, 0.9]
    margins = [-np.inf, -0.02, 0.001, 0.1, np.inf]
    uncertainties = [None, 0.1]
    agreements = [0.3, 0.62, 0.9]
    for s, f, m, u, a, ok in itertools.product(scores, fits, margins, uncertainties, agreements, [True, False]):
        v, why = vd.fit_verdict_reasons(s, f, m, u, a, ok)
        assert v == vd.verdict_fit(s, f, m, u, a, ok)
        assert (v == "confident") == (why == [])
        text = " ".join(why)
        if v == "no match":
            # each no-match check that failed is named, with its threshold
            assert (f"pattern score {s:.3f} is below {vd.NO_MATCH_SCORE}" in text) == (s < vd.NO_MATCH_SCORE)
            assert (f"whole-image fit {f:.3f} is below {vd.NO_MATCH_FIT}" in text) == (f < vd.NO_MATCH_FIT)
            assert ("calibration" in text) == (not ok)
            assert ("spots" in text) == (a < vd.NO_MATCH_AGREEMENT)
        elif v == "ambiguous":
            assert ("did not converge" in text) == (u is None)
            assert ("none is ruled out" in text) == (m == -np.inf)
            assert (vd.FIT_MARGIN_REASON in text) == (np.isfinite(m) and m < vd.MIN_FIT_MARGIN)
            assert ("better than this answer" in text) == (np.isfinite(m) and m < 0)
            assert ("spots" in text) == (a < vd.FIT_CONFIDENT_AGREEMENT)
    for s, m, a, ok in itertools.product(scores, margins[1:], agreements, [True, False]):
        v, why = vd.verdict_reasons(s, m, a, scale_ok=ok)
        assert v == vd.verdict(s, m, a, scale_ok=ok) and (v == "confident") == (why == [])
