"""Compiled (Numba) kernels of :mod:`edorient.indexing`: the sums behind a whole-image fit, and
the dictionary search's bound and exact reads.

:func:`masked_sums` gives, for each model and the image it is fitted to, the sums over that
image's valid pixels that a Pearson correlation needs (of the image, its square; of the model,
its square, its product with the image), in float64, one pass over the pixels a model (the
product with the image over the image's non-zero pixels only, a few per cent of a working
image) and one a distinct image. It replaces a product of every model with the validity mask,
its square, two float64 sums of them and a float32 matrix product
(:func:`edorient.indexing.matching.masked_correlations`): 3-5x faster a model, and closer to
the exact sums (the product accumulated in float32 to about 1e-7). The models' sums run as four
partial sums side by side (a single chain of additions waits on each one's latency).

:func:`weighted_moduli`, :func:`squared_norms` and :func:`entry_products` serve
:meth:`edorient.indexing.proposals.DictionaryProposals._best_entries`: the bound on every
dictionary entry's correlation, and the exact products of the entries it cannot rule out.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f4, _f8 = nb.float32, nb.float64


@njit(nb.types.Tuple((_f8[:, ::1], _f8[:, ::1], _f8[:, ::1], _f8[:, ::1], _f8[:, ::1], _f8[:, ::1]))(
    nb.float32[:, ::1], nb.boolean[:, ::1], nb.int64[::1], nb.float32[:, :, ::1]))
def masked_sums(images, valid, owner, models):
    """(Σm, Σm², Σmy (n, w); Σy, Σy², the valid pixels' count (u, 1)) over each image's
    ``valid`` pixels: images and valid (u, p), models (n, w, p), ``owner`` (n,) the image of each
    model. An image's pixels are read once for a run of models that share it (a chunk's
    hypotheses come image by image); the models' sums need no branch (the mask as 0 and 1)."""
    n, w, p = models.shape
    u = images.shape[0]
    sy = np.zeros((u, 1))
    syy = np.zeros((u, 1))
    nv = np.zeros((u, 1))
    sm = np.zeros((n, w))
    smm = np.zeros((n, w))
    smy = np.zeros((n, w))
    at = np.empty(p, dtype=np.int64)  # the image's non-zero valid pixels
    yv = np.empty(p)
    mask = np.zeros(p, dtype=np.float32)
    q = p - p % 4
    k_nz = 0
    for r in range(n):
        i = owner[r]
        if r == 0 or i != owner[r - 1]:
            k_nz = 0
            a = 0.0
            b = 0.0
            c = 0
            for k in range(p):
                ok = valid[i, k]
                mask[k] = np.float32(1.0) if ok else np.float32(0.0)
                c += ok
                v = np.float64(images[i, k])
                if ok and v != 0.0:
                    at[k_nz] = k
                    yv[k_nz] = v
                    k_nz += 1
                    a += v
                    b += v * v
            sy[i, 0] = a
            syy[i, 0] = b
            nv[i, 0] = c
        for j in range(w):
            mr = models[r, j]
            s0 = s1 = s2 = s3 = 0.0
            t0 = t1 = t2 = t3 = 0.0
            for k in range(0, q, 4):
                m0 = np.float64(mr[k] * mask[k])
                m1 = np.float64(mr[k + 1] * mask[k + 1])
                m2 = np.float64(mr[k + 2] * mask[k + 2])
                m3 = np.float64(mr[k + 3] * mask[k + 3])
                s0 += m0
                s1 += m1
                s2 += m2
                s3 += m3
                t0 += m0 * m0
                t1 += m1 * m1
                t2 += m2 * m2
                t3 += m3 * m3
            for k in range(q, p):
                m0 = np.float64(mr[k] * mask[k])
                s0 += m0
                t0 += m0 * m0
            uu = 0.0
            for k in range(k_nz):
                uu += np.float64(mr[at[k]]) * yv[k]
            sm[r, j] = (s0 + s1) + (s2 + s3)
            smm[r, j] = (t0 + t1) + (t2 + t3)
            smy[r, j] = uu
    return sm, smm, smy, sy, syy, nv


@njit(_f4[:, ::1](_f4[:, :, ::1], _f4[::1]))
def weighted_moduli(products, weights):
    """``Σ_f weights[f] |P[f, m, n]|`` (m, n) of complex products given as their float32 view
    (f, m, 2 n: real and imaginary parts side by side): a dictionary entry's bound on its
    correlation (:meth:`edorient.indexing.proposals.DictionaryProposals._best_entries`). torch's
    complex ``abs`` and a weighted sum took 20x longer on the CPU (160 against 7 ms for 32
    frequencies of 12,800 entries and 32 images). Float32 sums: their rounding (~1e-6 relative
    over tens of terms) is what the caller's margin covers."""
    F, m, n2 = products.shape
    n = n2 // 2
    out = np.zeros((m, n), dtype=np.float32)
    for f in range(F):
        wf = weights[f]
        for i in range(m):
            row = products[f, i]
            acc = out[i]
            for j in range(n):
                a = row[2 * j]
                b = row[2 * j + 1]
                acc[j] += wf * np.sqrt(a * a + b * b)
    return out


@njit(_f4[:, :, ::1](_f4[:, :, ::1], _f4[:, :, ::1], nb.int64[::1]), fastmath={"reassoc", "contract"})
def entry_products(entries_first, image_uv, entries):
    """The products ``P[f, e] = Σ_r T[entries[e], f, r] A[f, r]`` (nf, e, 2: real, imaginary) of
    chosen dictionary entries with one image at every angular frequency, as float32 views of
    complex arrays: ``entries_first`` (m, nf, 2 r) the conjugated entries, each entry's
    frequencies and radii side by side in memory (real and imaginary parts interleaved), and
    ``image_uv`` (nf, 2, 2 r) the image's FFT A as two real rows a frequency
    (:func:`product_rows`): the real part of the product is an entry's row times the first, the
    imaginary part times the second. Two real dot products of contiguous rows, which the compiler
    vectorises (the sums reassociated: float32 rounding of ~2e-7 relative, far inside the
    caller's 1e-4 margin). The interleaved complex product before, summed in order, was not
    vectorised: it took 2.3-2.7x as long for 32-1,024 entries of the 6,400-direction dictionary
    (``benchmarks/bench_search.py``), and the whole dictionary chain runs ~25 % faster with the
    same answers (docs/benchmarks.md, "Session 21"). An entry is read as one
    contiguous block: in the dictionary's (nf, m, 2 r) layout its rows lie a slab apart and the
    reads were 2.4-6x slower (64-1,024 entries); ``index_select`` and a batched product slower
    still."""
    m, nf, r2 = entries_first.shape
    e = entries.shape[0]
    out = np.empty((nf, e, 2), dtype=np.float32)
    for q in range(e):
        block = entries_first[entries[q]]
        for f in range(nf):
            t = block[f]
            u = image_uv[f, 0]
            v = image_uv[f, 1]
            re = np.float32(0.0)
            im = np.float32(0.0)
            for k in range(r2):
                re += t[k] * u[k]
                im += t[k] * v[k]
            out[f, q, 0] = re
            out[f, q, 1] = im
    return out


def product_rows(image: np.ndarray) -> np.ndarray:
    """(nf, 2, 2 r) float32 rows ``u``, ``v`` of an image's FFT ``A`` (nf, 2 r: real and imaginary
    parts interleaved) such that for a conjugated entry row ``t`` (interleaved likewise)
    ``Re Σ t A = t · u`` and ``Im Σ t A = t · v``: ``u = (Re A, -Im A)``, ``v = (Im A, Re A)``
    pair by pair (:func:`entry_products`).

    >>> a = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)  # 1 + 2i, 3 + 4i
    >>> product_rows(a)[0].tolist()
    [[1.0, -2.0, 3.0, -4.0], [2.0, 1.0, 4.0, 3.0]]
    """
    a = np.asarray(image, dtype=np.float32)
    re, im = a[..., 0::2], a[..., 1::2]
    out = np.empty(a.shape[:-1] + (2, a.shape[-1]), dtype=np.float32)
    out[..., 0, 0::2], out[..., 0, 1::2] = re, -im
    out[..., 1, 0::2], out[..., 1, 1::2] = im, re
    return out


@njit(_f8[:, ::1](_f4[:, :, ::1]))
def squared_norms(x):
    """``Σ_k x[a, b, k]²`` (a, b) in float64: the squared norms of complex rows given as their
    float32 view (real and imaginary parts side by side). torch's complex ``vector_norm`` took
    0.9 s for the 6,400-direction dictionary."""
    A, Bn, K = x.shape
    out = np.zeros((A, Bn))
    for a in range(A):
        for b in range(Bn):
            row = x[a, b]
            s = 0.0
            for k in range(K):
                v = np.float64(row[k])
                s += v * v
            out[a, b] = s
    return out


@njit(nb.int64(nb.int64[::1], _f8[::1], nb.boolean[:, ::1], nb.int64, nb.int64[::1]))
def greedy_groups(order, gbest, far, k, kept):
    """:meth:`edorient.indexing.proposals.DictionaryProposals._greedy`: up to ``k`` groups of
    ``order`` (best first) into ``kept``, each ``far`` from every one kept before it; a group
    scored -inf (not read) ends the run. Returns how many were kept. The Python loop was 8 % of
    the bicrystal chain's time once partners were read from a pool of 12."""
    kept[0] = order[0]
    n = 1
    for t in range(1, order.shape[0]):
        if n >= k:
            break
        q = order[t]
        if gbest[q] == -np.inf:
            break
        ok = True
        for j in range(n):
            if not far[q, kept[j]]:
                ok = False
                break
        if ok:
            kept[n] = q
            n += 1
    return n
