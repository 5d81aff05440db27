"""Compiled (Numba) kernels of :mod:`edorient.indexing`: the sums behind a whole-image fit.

:func:`masked_sums` gives, for each image and each of its models, the sums over the image's
valid pixels that a Pearson correlation needs (of the image, its square; of each model, its
square, its product with the image), in one pass over the pixels per model, in float64. It
replaces a product of every model with the validity mask, its square, two float64 sums of them
and a float32 matrix product (:func:`edorient.indexing.proposals._masked_correlations`): 5x
faster, and closer to the exact sums (float64 throughout, where the product accumulated in float32
to about 1e-7). Four partial sums run side by side (a single chain of additions waits on each
one's latency).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f8 = nb.float64


@njit(nb.types.UniTuple(_f8[:, ::1], 5)(nb.float32[:, ::1], nb.float32[:, :, ::1], nb.boolean[:, ::1]))
def masked_sums(images, models, valid):
    """(Σy, Σy², Σm, Σm², Σmy) over each image's ``valid`` pixels: images (n, p), models (n, w,
    p), valid (n, p); the image sums (n, 1), the model sums (n, w)."""
    n, w, p = models.shape
    sy = np.zeros((n, 1))
    syy = np.zeros((n, 1))
    sm = np.zeros((n, w))
    smm = np.zeros((n, w))
    smy = np.zeros((n, w))
    y = np.zeros(p + 4)  # the image where valid, else 0 (padded to a multiple of 4)
    vm = np.zeros(p + 4)  # 1 where valid
    q = p - p % 4
    for i in range(n):
        for k in range(p):
            if valid[i, k]:
                y[k] = images[i, k]
                vm[k] = 1.0
            else:
                y[k] = 0.0
                vm[k] = 0.0
        a0 = a1 = a2 = a3 = 0.0
        b0 = b1 = b2 = b3 = 0.0
        for k in range(0, p, 4):  # (y[p:] stays 0)
            a0 += y[k]
            a1 += y[k + 1]
            a2 += y[k + 2]
            a3 += y[k + 3]
            b0 += y[k] * y[k]
            b1 += y[k + 1] * y[k + 1]
            b2 += y[k + 2] * y[k + 2]
            b3 += y[k + 3] * y[k + 3]
        sy[i, 0] = (a0 + a1) + (a2 + a3)
        syy[i, 0] = (b0 + b1) + (b2 + b3)
        for j in range(w):
            mr = models[i, j]
            s0 = s1 = s2 = s3 = 0.0
            t0 = t1 = t2 = t3 = 0.0
            u0 = u1 = u2 = u3 = 0.0
            for k in range(0, q, 4):
                m0 = mr[k] * vm[k]
                m1 = mr[k + 1] * vm[k + 1]
                m2 = mr[k + 2] * vm[k + 2]
                m3 = mr[k + 3] * vm[k + 3]
                s0 += m0
                s1 += m1
                s2 += m2
                s3 += m3
                t0 += m0 * m0
                t1 += m1 * m1
                t2 += m2 * m2
                t3 += m3 * m3
                u0 += m0 * y[k]
                u1 += m1 * y[k + 1]
                u2 += m2 * y[k + 2]
                u3 += m3 * y[k + 3]
            for k in range(q, p):
                m0 = mr[k] * vm[k]
                s0 += m0
                t0 += m0 * m0
                u0 += m0 * y[k]
            sm[i, j] = (s0 + s1) + (s2 + s3)
            smm[i, j] = (t0 + t1) + (t2 + t3)
            smy[i, j] = (u0 + u1) + (u2 + u3)
    return sy, syy, sm, smm, smy
