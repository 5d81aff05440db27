"""Compiled (Numba) objective of the refinement on the CPU: one pass a hypothesis.

:func:`normal_equations` computes, for every hypothesis of a chunk, what one Levenberg-Marquardt
step of :class:`edorient.indexing.refine.Refiner` needs from its objective: the Gauss-Newton
matrix ``JᵀJ``, the gradient ``Jᵀr``, the squared residual ``|r|² = 1 - c²``, the correlation
``c`` and the number of valid samples. It is the same objective as the torch evaluation
(``Refiner._evaluate`` followed by the normal equations; see :mod:`edorient.indexing.refine` for
the model): the spots' geometry and peaks with their derivatives, the bilinear samples of the
blurred image and its gradients on each spot's stencil, the model there (the spot's Gaussian, its
neighbours' tails, the background), both display-transformed, then the weighted centring, the
normalisation and the residual ``ŷ - c m̂`` with its Jacobian through both.

Why compiled: on the CPU a chunk's evaluation is a few hundred small tensor operations (a
hypothesis holds some tens of spots, five samples each, 8 or 11 parameters), most of their time
spent in dispatch and in writing and re-reading the (hypotheses, samples, parameters) Jacobian;
here each hypothesis' samples and Jacobian rows stay in small scratch buffers, reduced to ``JᵀJ``
by one matrix product a hypothesis. The torch evaluation stays the reference (tested equal to this
one) and the path on CUDA.

:func:`nearest_spots` gives each spot's nearest neighbours (whose tails enter its model), the
compiled twin of the distance matrix and ``topk`` in ``Refiner._neighbours``.

The centring, normalisation and correlation's derivative come from one pass of raw sums over a
hypothesis' valid samples (Σy, Σy², Σym, Σdy, Σy·dy, Σm·dy, ... in float64); each sample's
Jacobian row is then ``α dy + β dm + u + ŷ v + m̂ w`` with vectors ``u, v, w`` fixed per
hypothesis. Before, five passes over the (samples, parameters) rows did it step by step (centre,
normalise, project): the same values to ~1e-13 relative, this 15-25 % faster a call (150
captured calls of the bicrystal chain; docs/benchmarks.md, session 38).

Sums are in float64 (the torch evaluation's in float32): the two agree to about 1e-6 relative.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from edorient._utils.jit import njit

_f4, _f8, _i8, _b1 = nb.float32, nb.float64, nb.int64, nb.boolean


@njit(nb.types.Tuple((_f8[:, :, ::1], _f8[:, ::1], _f8[::1], _f8[::1], _f8[::1]))(
    _f4[:, :, :, ::1], _i8, _f4[:, :, :, ::1], _f4[:, ::1], _f4[:, :, :, ::1], _f4[:, :, ::1], _f4[:, :, ::1],
    _b1[:, :, ::1], _i8[:, :, ::1], _b1[:, :, ::1], _f4[:, ::1], _f4[::1],
    _f8, _f8, _f8, _f8, _f8, _f8, _f8, _f8, _b1, _b1))
def normal_equations(feats, h, R, p, gsel, sagsel, relsel, valid, nb_idx, nb_ok, offsets, g_o,
                     cal, r0, c0, thick, amp, sigma, direct_beam, gain, sinc2, use_direct_beam):
    """(JᵀJ (B, P, P), Jᵀr (B, P), |r|² (B,), c (B,), valid samples (B,), at least 2).

    ``feats`` (n, C, H, W): blurred linear image, its row and column derivatives and, with C = 4,
    1 where the image holds data; hypothesis ``b`` belongs to image ``b // h``. ``R`` (B, G, 3, 3)
    and ``p`` (B, 5) (centre row, col, log scale, ratio, background) the state; ``gsel``,
    ``sagsel``, ``relsel``, ``valid`` (B, G, K[, 3]) the selected reflections; ``nb_idx``,
    ``nb_ok`` (B, Ks, Nn) each spot's neighbours (spot index G*K: the direct beam); ``offsets``
    (S, 2) and ``g_o`` (S,) the stencil and its Gaussian weights. P = 3 G + 5."""
    n_img, C, H, W = feats.shape
    B, G, K = valid.shape
    Ks = G * K + 1
    nP = 3 * G + 5
    o = 3 * G
    S = offsets.shape[0]
    M = Ks * S
    Nn = nb_idx.shape[2]
    log1pk = math.log1p(gain)
    inv_s2 = 1.0 / (sigma * sigma)
    A = np.zeros((B, nP, nP))
    gv = np.zeros((B, nP))
    rss = np.zeros(B)
    corr = np.zeros(B)
    nws = np.zeros(B)
    row = np.empty(Ks)
    col = np.empty(Ks)
    Q = np.empty(Ks)
    drow = np.empty((Ks, nP))
    dcol = np.empty((Ks, nP))
    dQ = np.empty((Ks, nP))
    y = np.empty(M)
    m = np.empty(M)
    wt = np.empty(M)
    dy = np.empty((M, nP))
    dm = np.empty((M, nP))
    dM = np.empty(nP)
    Jv = np.empty((M, nP))
    D1 = np.empty(nP)
    E1 = np.empty(nP)
    YD = np.empty(nP)
    MD = np.empty(nP)
    YE = np.empty(nP)
    ME = np.empty(nP)
    u = np.empty(nP)
    v = np.empty(nP)
    w = np.empty(nP)
    for b in range(B):
        img = b // h
        crow, ccol, bg = float(p[b, 0]), float(p[b, 1]), float(p[b, 4])
        ratio = float(p[b, 3])
        inv = 1.0 / (cal * math.exp(float(p[b, 2])))
        drow[:] = 0.0
        dcol[:] = 0.0
        dQ[:] = 0.0
        # -- geometry: spot centres, peaks and their derivatives (the direct beam last) --------
        for g in range(G):
            wg = 1.0 if G == 1 else (ratio if g == 0 else 1.0 - ratio)
            for k in range(K):
                i = g * K + k
                v0, v1, v2 = float(gsel[b, g, k, 0]), float(gsel[b, g, k, 1]), float(gsel[b, g, k, 2])
                gx = R[b, g, 0, 0] * v0 + R[b, g, 0, 1] * v1 + R[b, g, 0, 2] * v2
                gy = R[b, g, 1, 0] * v0 + R[b, g, 1, 1] * v1 + R[b, g, 1, 2] * v2
                gz = R[b, g, 2, 0] * v0 + R[b, g, 2, 1] * v1 + R[b, g, 2, 2] * v2
                x = thick * (gz - sagsel[b, g, k])
                if sinc2:
                    if x == 0.0:
                        sx = 1.0
                    else:
                        sx = math.sin(math.pi * x) / (math.pi * x)
                    shape = sx * sx
                    dsinc = 0.0 if abs(x) < 1e-6 else (math.cos(math.pi * x) - sx) / x
                    dshape = 2.0 * sx * dsinc * thick
                else:
                    shape = math.exp(-math.pi * x * x)
                    dshape = -2.0 * math.pi * x * thick * shape
                rel = float(relsel[b, g, k])
                P = rel * shape
                row[i] = r0 + crow - gy * inv
                col[i] = c0 + ccol + gx * inv
                Q[i] = wg * P * amp
                dqs = wg * rel * dshape * amp
                # d g_lab / d delta_j = e_j x g_lab
                drow[i, 3 * g] = gz * inv
                dQ[i, 3 * g] = dqs * gy
                dcol[i, 3 * g + 1] = gz * inv
                dQ[i, 3 * g + 1] = -dqs * gx
                drow[i, 3 * g + 2] = -gx * inv
                dcol[i, 3 * g + 2] = -gy * inv
                drow[i, o] = 1.0
                dcol[i, o + 1] = 1.0
                drow[i, o + 2] = gy * inv
                dcol[i, o + 2] = -gx * inv
                if G == 2:
                    dQ[i, o + 3] = P * amp if g == 0 else -P * amp
        i = Ks - 1
        row[i] = r0 + crow
        col[i] = c0 + ccol
        Q[i] = direct_beam * amp
        drow[i, o] = 1.0
        dcol[i, o + 1] = 1.0
        # -- samples and model on every spot's stencil ------------------------------------------
        nw = 0.0
        for i in range(Ks):
            vi = use_direct_beam if i == Ks - 1 else valid[b, i // K, i % K]
            for s in range(S):
                q = i * S + s
                pr = row[i] + offsets[s, 0]
                pc = col[i] + offsets[s, 1]
                # bilinear, coordinates clamped to the image (grid_sample's border padding)
                yr = min(max(pr, 0.0), H - 1.0)
                xc = min(max(pc, 0.0), W - 1.0)
                y0 = int(math.floor(yr))
                x0 = int(math.floor(xc))
                fy = yr - y0
                fx = xc - x0
                y1 = min(y0 + 1, H - 1)
                x1 = min(x0 + 1, W - 1)
                w00 = (1.0 - fy) * (1.0 - fx)
                w01 = (1.0 - fy) * fx
                w10 = fy * (1.0 - fx)
                w11 = fy * fx
                s0 = (w00 * feats[img, 0, y0, x0] + w01 * feats[img, 0, y0, x1]
                      + w10 * feats[img, 0, y1, x0] + w11 * feats[img, 0, y1, x1])
                s1 = (w00 * feats[img, 1, y0, x0] + w01 * feats[img, 1, y0, x1]
                      + w10 * feats[img, 1, y1, x0] + w11 * feats[img, 1, y1, x1])
                s2 = (w00 * feats[img, 2, y0, x0] + w01 * feats[img, 2, y0, x1]
                      + w10 * feats[img, 2, y1, x0] + w11 * feats[img, 2, y1, x1])
                ok = vi and pr >= 0.0 and pr <= H - 1.0 and pc >= 0.0 and pc <= W - 1.0
                if ok and C == 4:
                    s3 = (w00 * feats[img, 3, y0, x0] + w01 * feats[img, 3, y0, x1]
                          + w10 * feats[img, 3, y1, x0] + w11 * feats[img, 3, y1, x1])
                    ok = s3 > 0.5
                if not ok:
                    wt[q] = 0.0
                    continue
                wt[q] = 1.0
                nw += 1.0
                # the model: own Gaussian + neighbours' tails + background
                go = float(g_o[s])
                ml = Q[i] * go + bg
                for a in range(nP):
                    dM[a] = go * dQ[i, a]
                dM[nP - 1] = 1.0
                tr_sum = 0.0
                tc_sum = 0.0
                for j in range(Nn):
                    if not nb_ok[b, i, j]:
                        continue
                    jj = nb_idx[b, i, j]
                    dr = pr - row[jj]
                    dcc = pc - col[jj]
                    E = math.exp(-0.5 * (dr * dr + dcc * dcc) * inv_s2)
                    T = Q[jj] * E
                    ml += T
                    Tr = -T * dr * inv_s2
                    Tc = -T * dcc * inv_s2
                    tr_sum += Tr
                    tc_sum += Tc
                    for a in range(nP):
                        dM[a] += E * dQ[jj, a] - Tr * drow[jj, a] - Tc * dcol[jj, a]
                # display transforms and their derivatives (0 outside [0, 1], where they clip)
                xy = min(max(s0, 0.0), 1.0)
                y[q] = math.log1p(gain * xy) / log1pk
                ty = 0.0 if (s0 > 1.0 or s0 < 0.0) else gain / ((1.0 + gain * xy) * log1pk)
                xm = min(max(ml, 0.0), 1.0)
                m[q] = math.log1p(gain * xm) / log1pk
                tm = 0.0 if (ml > 1.0 or ml < 0.0) else gain / ((1.0 + gain * xm) * log1pk)
                a1, a2 = ty * s1, ty * s2
                for a in range(nP):
                    dy[q, a] = a1 * drow[i, a] + a2 * dcol[i, a]
                    dm[q, a] = tm * (dM[a] + tr_sum * drow[i, a] + tc_sum * dcol[i, a])
        # -- correlation residual ŷ - c m̂ and its Jacobian, reduced to JᵀJ and Jᵀr --------------
        # one pass of raw sums, then each valid row's J = α dy + β dm + u + ŷ v + m̂ w
        nw = max(nw, 2.0)
        nws[b] = nw
        n0 = 0.0
        Y1 = 0.0
        M1 = 0.0
        Y2 = 0.0
        M2 = 0.0
        YM = 0.0
        D1[:] = 0.0
        E1[:] = 0.0
        YD[:] = 0.0
        MD[:] = 0.0
        YE[:] = 0.0
        ME[:] = 0.0
        for q in range(M):
            if wt[q] == 0.0:
                continue
            yq = y[q]
            mq = m[q]
            n0 += 1.0
            Y1 += yq
            M1 += mq
            Y2 += yq * yq
            M2 += mq * mq
            YM += yq * mq
            for a in range(nP):
                dya = dy[q, a]
                dma = dm[q, a]
                D1[a] += dya
                E1[a] += dma
                YD[a] += yq * dya
                MD[a] += mq * dya
                YE[a] += yq * dma
                ME[a] += mq * dma
        my = Y1 / nw
        mm = M1 / nw
        sYc = Y1 - n0 * my  # Σ yc (0 unless nw was clamped)
        sMc = M1 - n0 * mm
        ny = max(math.sqrt(max(Y2 - 2.0 * my * Y1 + n0 * my * my, 0.0)), 1e-12)
        nm = max(math.sqrt(max(M2 - 2.0 * mm * M1 + n0 * mm * mm, 0.0)), 1e-12)
        c = (YM - my * M1 - mm * Y1 + n0 * my * mm) / (ny * nm)
        corr[b] = c
        for a in range(nP):
            sya = D1[a] / nw
            sma = E1[a] / nw
            Sy = ((YD[a] - my * D1[a]) - sya * sYc) / ny  # Σ ŷ dyc
            Sm = ((ME[a] - mm * E1[a]) - sma * sMc) / nm  # Σ m̂ dmc
            dycm = ((MD[a] - mm * D1[a]) - sya * sMc) / nm  # Σ dyc m̂
            ydmc = ((YE[a] - my * E1[a]) - sma * sYc) / ny  # Σ ŷ dmc
            dca = (dycm - Sy * c) / ny + (ydmc - Sm * c) / nm
            u[a] = -sya / ny + c * sma / nm
            v[a] = -Sy / ny
            w[a] = c * Sm / nm - dca
        al = 1.0 / ny
        be = -c / nm
        r2 = 0.0
        cnt = 0
        for q in range(M):
            if wt[q] == 0.0:
                continue
            yh = (y[q] - my) / ny
            mh = (m[q] - mm) / nm
            res = yh - c * mh
            r2 += res * res
            for a in range(nP):
                ja = al * dy[q, a] + be * dm[q, a] + u[a] + yh * v[a] + mh * w[a]
                Jv[cnt, a] = ja
                gv[b, a] += ja * res
            cnt += 1
        rss[b] = r2
        if cnt > 0:  # JᵀJ by one matrix product over the valid samples' rows
            Jc = Jv[:cnt]
            A[b] = np.dot(Jc.T, Jc)
    return A, gv, rss, corr, nws


@njit(nb.types.Tuple((_i8[:, :, ::1], _b1[:, :, ::1]))(_f4[:, ::1], _f4[:, ::1], _b1[:, ::1], _i8, _f8))
def nearest_spots(row, col, valid, n_near, reach):
    """(indices (B, Ks, n_near), within ``reach`` (B, Ks, n_near)) of each spot's nearest other
    valid spots, nearest first (equal distances: the lower index first; fewer valid spots than
    ``n_near``: the remaining slots hold other indices, flagged False). Distances squared in
    float32 as the tensor version (:meth:`Refiner._neighbours`) computes them; one pass a spot
    instead of a (B, Ks, Ks) matrix and its ``topk``."""
    B, Ks = row.shape
    idx = np.zeros((B, Ks, n_near), dtype=np.int64)
    ok = np.zeros((B, Ks, n_near), dtype=np.bool_)
    dist = np.empty(n_near, dtype=np.float32)
    r2 = np.float32(reach * reach)
    inf = np.float32(np.inf)
    for b in range(B):
        for i in range(Ks):
            for q in range(n_near):
                dist[q] = inf
                idx[b, i, q] = -1
            for j in range(Ks):
                if j == i or not valid[b, j]:
                    continue
                dr = row[b, i] - row[b, j]
                dc = col[b, i] - col[b, j]
                d = dr * dr + dc * dc
                if d < dist[n_near - 1]:  # insert, keeping equal distances in index order
                    q = n_near - 1
                    while q > 0 and dist[q - 1] > d:
                        dist[q] = dist[q - 1]
                        idx[b, i, q] = idx[b, i, q - 1]
                        q -= 1
                    dist[q] = d
                    idx[b, i, q] = j
            nxt = 0
            for q in range(n_near):
                if idx[b, i, q] < 0:  # an empty slot: another index, never a neighbour
                    if nxt == i:
                        nxt += 1
                    idx[b, i, q] = min(nxt, Ks - 1)
                    nxt += 1
                else:
                    ok[b, i, q] = dist[q] < r2
    return idx, ok
