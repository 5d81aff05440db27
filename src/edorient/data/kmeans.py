"""K-means data balancing of the training subsets (thesis section 3.5).

The thesis clusters the downscaled training images with K-means (scikit-learn defaults,
k-means++), picks K by the elbow of the SSE curve for K = 1..10 and builds five training
subsets (100k x 4 + 89.5k) whose cluster proportions are equal:

(i)  cluster all training images at once (56 x 56): Tables 3.10 and 3.11;
(ii) split them into 5 directories, cluster each (112 x 112), split each directory into 5
     parts with equal proportions and merge the same-numbered parts: Tables 3.12-3.22.

Everything here is a pure function of arrays (images, features, labels, ids); reading a data
set and writing files is left to the caller (``edorient cluster``).

The elbow rule
--------------
:func:`elbow_k`: put K and SSE on normalised axes, ``x = (K - 1) / (kmax - 1)`` and
``y = (SSE_K - SSE_kmax) / (SSE_1 - SSE_kmax)``, draw the chord from ``(0, 1)`` (K = 1) to
``(1, 0)`` (K = kmax) and take the K whose point lies farthest *below* the chord (the largest
``1 - x - y``; the smallest such K on a tie). A curve with no point below the chord has no
elbow: K = 1. This is the "Kneedle" knee of Satopää et al. (2011), "Finding a 'kneedle' in a
haystack", ICDCS Workshops, without smoothing.

Equal proportions
-----------------
:func:`allocate_counts` splits cluster sizes ``m_c`` over subset sizes ``n_s``: the target
``n_s m_c / N`` is rounded down, and the remaining images are placed, one per cell, so that
every subset and every cluster gets exactly its total and the placed cells carry the largest
remainders (a min-cost flow on the 5 x K fractional cells; Cox (1987), "A constructive
procedure for unbiased controlled rounding", JASA 82:520). Every count is therefore within
one image of the exact proportional share, in both directions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edorient._utils.rng import seeded_rng
from edorient.data.splits import THESIS_SUBSET_WEIGHTS, proportional_sizes
from edorient.errors import EdorientError

log = logging.getLogger(__name__)

#: Scheme names of the two K-means subset schemes in the data set's index files.
SCHEME_I = "kmeans_i"
SCHEME_II = "kmeans_ii"
#: Downscaled side used by the thesis for scheme (i) and (ii).
THESIS_RESIZE = {"i": 56, "ii": 112}
#: Relative sizes of the thesis' five training subsets (100k x 4 + 89.5k).
SUBSET_WEIGHTS = THESIS_SUBSET_WEIGHTS
#: Number of directories of scheme (ii).
N_DIRECTORIES = 5
ALGORITHMS = ("auto", "lloyd", "minibatch")


# -- features ----------------------------------------------------------------------------------
def area_downscale(images: np.ndarray, size: int) -> np.ndarray:
    """Downscale ``(b, H, W)`` images to ``(b, size, size)`` by averaging pixel blocks.

    The side must divide ``H`` and ``W`` (224 -> 112, 56, 28, ...); the block mean is exact
    area resampling and keeps values in the input range.

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    >>> area_downscale(x, 2)[0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise EdorientError(f"expected images of shape (n, H, W), got {images.shape}")
    _, h, w = images.shape
    check_resize(size, h, w)
    fh, fw = h // size, w // size
    x = images.astype(np.float32, copy=False)
    if fh == 1 and fw == 1:
        return np.ascontiguousarray(x)
    return x.reshape(-1, size, fh, size, fw).mean(axis=(2, 4), dtype=np.float32)


def check_resize(size: int, height: int, width: int | None = None) -> None:
    """EdorientError unless ``size`` is a positive divisor of the image side(s)."""
    width = height if width is None else width
    if int(size) < 1 or height % int(size) or width % int(size):
        divisors = [d for d in range(1, min(height, width) + 1) if height % d == 0 and width % d == 0]
        raise EdorientError(
            f"--resize {size} must divide the image side {height}x{width} (area downscaling by "
            f"whole blocks); choose one of {', '.join(map(str, divisors[-6:]))}"
        )


def compute_features(
    batches: Iterable[np.ndarray], n: int, size: int, out: np.ndarray | None = None, progress: bool = False
) -> np.ndarray:
    """Features ``(n, size * size)`` float32 from image batches ``(b, H, W)`` in [0, 1].

    Batches are downscaled one at a time (:func:`area_downscale`) and written into ``out``
    (a new array, or e.g. a float32 memmap), so memory beyond ``out`` is one batch.
    """
    from edorient._utils.progress import progress_bar

    if out is None:
        out = np.empty((int(n), int(size) * int(size)), dtype=np.float32)
    pos = 0
    with progress_bar(total=int(n), unit="img", desc=f"features {size}x{size}", disable=not progress) as bar:
        for batch in batches:
            f = area_downscale(batch, size).reshape(len(batch), -1)
            if pos + len(f) > n:
                raise EdorientError(f"image source gave more than the {n} images asked for")
            out[pos : pos + len(f)] = f
            pos += len(f)
            bar.update(len(f))
    if pos != n:
        raise EdorientError(f"image source gave {pos} images, {n} expected")
    return out


# -- K-means -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KMeansConfig:
    """How to cluster.

    Attributes
    ----------
    kmax
        Largest K of the SSE curve (K = 1..kmax); 0 skips the curve (needs ``k``).
    k
        Number of clusters; ``None`` takes the elbow of the curve (:func:`elbow_k`).
    algorithm
        ``"lloyd"``: scikit-learn ``KMeans`` (the thesis' choice) on features held in memory;
        ``"minibatch"``: ``MiniBatchKMeans.partial_fit`` over chunks, SSE and labels from a
        full pass (bounded memory, approximate); ``"auto"``: lloyd when the features take at
        most ``max_feature_gb``, else minibatch.
    seed
        ``random_state`` of every fit.
    n_init
        k-means++ restarts per K (scikit-learn >= 1.4 uses 1 for k-means++; the thesis'
        version used 10).
    max_iter, tol
        Lloyd iterations and tolerance (scikit-learn defaults). scikit-learn turns a non-zero
        ``tol`` into an absolute one with ``np.var(X, axis=0)``, a temporary as large as the
        features: peak memory is then about twice the features. ``tol=0`` avoids it (and
        iterates until no label changes).
    batch_size, epochs
        Minibatch chunk size and passes over the data.
    max_feature_gb
        Memory budget of in-memory features for ``"auto"``.
    """

    kmax: int = 10
    k: int | None = None
    algorithm: Literal["auto", "lloyd", "minibatch"] = "auto"
    seed: int = 0
    n_init: int = 1
    max_iter: int = 300
    tol: float = 1e-4
    batch_size: int = 4096
    epochs: int = 3
    max_feature_gb: float = 10.0

    def validated(self) -> "KMeansConfig":
        if self.algorithm not in ALGORITHMS:
            raise EdorientError(f"unknown algorithm {self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.kmax != 0 and self.kmax < 2:
            raise EdorientError(f"--kmax must be >= 2 (the SSE curve for K = 1..kmax), got {self.kmax}")
        if self.k is not None and self.k < 1:
            raise EdorientError(f"--k must be >= 1, got {self.k}")
        if self.k is None and self.kmax < 3:
            raise EdorientError(
                f"the elbow rule needs an interior point, so --kmax >= 3 (got {self.kmax}); "
                "or give the number of clusters with --k"
            )
        if not self.tol >= 0:
            raise EdorientError(f"--tol must be >= 0, got {self.tol}")
        if self.n_init < 1 or self.max_iter < 1 or self.batch_size < 1 or self.epochs < 1:
            raise EdorientError("--n-init, --max-iter, --batch-size and --epochs must be >= 1")
        return self

    def resolve_algorithm(self, n: int, dim: int) -> str:
        """``lloyd`` or ``minibatch`` for ``n`` features of ``dim`` floats."""
        if self.algorithm != "auto":
            return self.algorithm
        return "lloyd" if feature_bytes(n, dim) <= self.max_feature_gb * 1e9 else "minibatch"


def feature_bytes(n: int, dim: int) -> int:
    """Bytes of ``n`` float32 features of ``dim`` values (489,500 x 56^2: 6.14 GB)."""
    return int(n) * int(dim) * 4


@dataclass
class ClusterResult:
    """Outcome of :func:`cluster`: the SSE curve, the chosen K and its labels."""

    ks: np.ndarray
    """K = 1..kmax of the curve (empty when skipped)."""
    sse: np.ndarray
    """SSE (sum of squared distances to the nearest centre) for each K in ``ks``."""
    k: int
    """The chosen number of clusters."""
    k_rule: str
    """``"elbow"`` or ``"given"``."""
    labels: np.ndarray
    """Cluster (0..k-1) of every sample, int32."""
    algorithm: str
    """``"lloyd"`` or ``"minibatch"``."""
    seconds: dict = field(default_factory=dict)
    """Wall time of each fit, by K."""


def _fit_lloyd(X: np.ndarray, k: int, cfg: KMeansConfig) -> tuple[float, np.ndarray]:
    from sklearn.cluster import KMeans

    # copy_x=False: scikit-learn centres X in place and restores it, instead of copying it
    # (a 6 GB copy at full scale).
    km = KMeans(n_clusters=k, init="k-means++", n_init=cfg.n_init, max_iter=cfg.max_iter, tol=cfg.tol,
                random_state=cfg.seed, copy_x=False, algorithm="lloyd")
    km.fit(X)
    return float(km.inertia_), km.labels_.astype(np.int32)


def _chunks(n: int, size: int):
    for a in range(0, n, size):
        yield a, min(a + size, n)


def _fit_minibatch(X, k: int, cfg: KMeansConfig) -> tuple[float, np.ndarray]:
    """MiniBatchKMeans over contiguous chunks of ``X`` (rows should be in random order)."""
    from sklearn.cluster import MiniBatchKMeans

    n = len(X)
    mb = MiniBatchKMeans(n_clusters=k, init="k-means++", n_init=cfg.n_init, random_state=cfg.seed,
                         batch_size=cfg.batch_size, compute_labels=False)
    for _ in range(cfg.epochs):
        for a, b in _chunks(n, cfg.batch_size):
            if b - a >= k:
                mb.partial_fit(np.asarray(X[a:b], dtype=np.float32))
    labels = np.empty(n, dtype=np.int32)
    sse = 0.0
    for a, b in _chunks(n, cfg.batch_size):
        chunk = np.asarray(X[a:b], dtype=np.float32)
        labels[a:b] = mb.predict(chunk)
        sse -= float(mb.score(chunk))
    return sse, labels


def cluster(X, cfg: KMeansConfig, progress: bool = False, algorithm: str | None = None) -> ClusterResult:
    """SSE curve for K = 1..kmax, the elbow (or given) K and its labels.

    Parameters
    ----------
    X
        Features ``(n, d)`` float32: an array, or for ``minibatch`` anything sliceable by rows
        (a memmap). For ``minibatch`` the rows should be in random order.
    cfg
        :class:`KMeansConfig`.
    progress
        tqdm bar over K.
    algorithm
        Override ``cfg.resolve_algorithm``.
    """
    import time

    from edorient._utils.progress import progress_bar

    cfg = cfg.validated()
    n = len(X)
    algo = algorithm or cfg.resolve_algorithm(n, X.shape[1])
    if algo == "lloyd":
        X = np.ascontiguousarray(X, dtype=np.float32)
        fit = _fit_lloyd
    else:
        fit = _fit_minibatch
    kmax_eff = max(cfg.kmax, cfg.k or 0)
    if n < max(kmax_eff, 1):
        raise EdorientError(f"{n} images cannot be split into {kmax_eff} clusters; lower --kmax/--k or use more images")
    ks = np.arange(1, cfg.kmax + 1) if cfg.kmax else np.zeros(0, dtype=int)
    sse, labels_by_k, seconds = [], {}, {}
    for k in progress_bar(ks.tolist(), desc=f"k-means ({algo})", unit="K", disable=not progress):
        t0 = time.perf_counter()
        s, lab = fit(X, k, cfg)
        seconds[k] = time.perf_counter() - t0
        sse.append(s)
        labels_by_k[k] = lab
        log.info("K = %d: SSE %.6g (%.1f s)", k, s, seconds[k])
    sse = np.asarray(sse, dtype=np.float64)
    if cfg.k is None:
        k, rule = elbow_k(sse, ks), "elbow"
    else:
        k, rule = int(cfg.k), "given"
    if k not in labels_by_k:
        t0 = time.perf_counter()
        _, labels_by_k[k] = fit(X, k, cfg)
        seconds[k] = time.perf_counter() - t0
    return ClusterResult(ks=ks, sse=sse, k=k, k_rule=rule, labels=labels_by_k[k], algorithm=algo, seconds=seconds)


def elbow_k(sse, ks=None) -> int:
    """The elbow of an SSE curve: the K farthest below the chord on normalised axes.

    See the module docstring for the rule. ``ks`` defaults to ``1..len(sse)``.

    Examples
    --------
    >>> elbow_k([100, 50, 20, 5, 4, 3, 2.5, 2, 1.5, 1])
    4
    """
    sse = np.asarray(sse, dtype=np.float64)
    ks = np.arange(1, sse.size + 1) if ks is None else np.asarray(ks)
    if sse.ndim != 1 or sse.size != ks.size:
        raise EdorientError("the SSE curve and its K values must be 1-D of the same length")
    if sse.size < 3:
        raise EdorientError(f"the elbow rule needs at least 3 points (K = 1..kmax, kmax >= 3), got {sse.size}")
    if not np.all(np.isfinite(sse)):
        raise EdorientError("the SSE curve has non-finite values")
    span = sse[0] - sse[-1]
    if span <= 0:
        log.warning("the SSE curve does not fall from K = %d to K = %d: no elbow, K = 1", ks[0], ks[-1])
        return int(ks[0])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (sse - sse[-1]) / span
    below = 1.0 - x - y  # proportional to the distance below the chord x + y = 1
    i = int(np.argmax(below))
    if below[i] <= 1e-12:
        log.warning("no point of the SSE curve lies below the chord: no elbow, K = 1")
        return int(ks[0])
    return int(ks[i])


# -- balanced subsets --------------------------------------------------------------------------
def subset_sizes(total: int, weights=SUBSET_WEIGHTS) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (exact sum; 489,500 -> 100k x 4 + 89.5k).

    Examples
    --------
    >>> subset_sizes(489_500)
    [100000, 100000, 100000, 100000, 89500]
    >>> subset_sizes(97_900)
    [20000, 20000, 20000, 20000, 17900]
    """
    return proportional_sizes(int(total), weights)


def allocate_counts(cluster_sizes, sizes) -> np.ndarray:
    """Images of each cluster in each subset, ``(n_subsets, n_clusters)`` int64.

    Row ``s`` sums to ``sizes[s]``, column ``c`` to ``cluster_sizes[c]`` and every entry is
    the floor or the ceiling of ``sizes[s] * cluster_sizes[c] / N`` (controlled rounding,
    the largest remainders first; see the module docstring).

    Examples
    --------
    >>> allocate_counts([6, 3, 1], [5, 5]).tolist()
    [[3, 2, 0], [3, 1, 1]]
    """
    m = np.asarray(cluster_sizes, dtype=np.int64)
    n = np.asarray(sizes, dtype=np.int64)
    if m.ndim != 1 or n.ndim != 1 or (m < 0).any() or (n < 0).any():
        raise EdorientError("cluster sizes and subset sizes must be 1-D and non-negative")
    total = int(m.sum())
    if int(n.sum()) != total:
        raise EdorientError(f"subset sizes sum to {int(n.sum())}, the clusters to {total}")
    if total == 0:
        return np.zeros((n.size, m.size), dtype=np.int64)
    prod = n[:, None] * m[None, :]
    floor, rem = prod // total, prod % total
    need_row = n - floor.sum(axis=1)
    need_col = m - floor.sum(axis=0)
    extra = _max_remainder_flow(need_row, need_col, rem)
    return floor + extra


def _max_remainder_flow(need_row: np.ndarray, need_col: np.ndarray, rem: np.ndarray) -> np.ndarray:
    """0/1 matrix on cells with ``rem > 0``, margins ``need_row``/``need_col``, max sum of rem.

    Successive shortest paths (Bellman-Ford) on source -> rows -> cells -> columns -> sink with
    cost ``-rem`` per cell; the graph has at most a few dozen nodes.
    """
    r, c = rem.shape
    S, T = r + c, r + c + 1
    nodes = r + c + 2
    # edges as lists: to, cap, cost, rev index
    graph: list[list[list]] = [[] for _ in range(nodes)]

    def add(u, v, cap, cost):
        graph[u].append([v, cap, cost, len(graph[v])])
        graph[v].append([u, 0, -cost, len(graph[u]) - 1])

    for i in range(r):
        add(S, i, int(need_row[i]), 0)
    cells = {}
    for i in range(r):
        for j in range(c):
            if rem[i, j] > 0:
                cells[(i, j)] = (i, len(graph[i]))
                add(i, r + j, 1, -int(rem[i, j]))
    for j in range(c):
        add(r + j, T, int(need_col[j]), 0)
    flow, want = 0, int(need_row.sum())
    while flow < want:
        dist = [None] * nodes
        prev = [None] * nodes
        dist[S] = 0
        for _ in range(nodes):
            changed = False
            for u in range(nodes):
                if dist[u] is None:
                    continue
                for ei, (v, cap, cost, _) in enumerate(graph[u]):
                    if cap > 0 and (dist[v] is None or dist[u] + cost < dist[v]):
                        dist[v], prev[v] = dist[u] + cost, (u, ei)
                        changed = True
            if not changed:
                break
        if dist[T] is None:  # pragma: no cover - impossible for integer margins
            raise RuntimeError("controlled rounding failed: no feasible allocation")
        v = T
        while v != S:
            u, ei = prev[v]
            e = graph[u][ei]
            e[1] -= 1
            graph[v][e[3]][1] += 1
            v = u
        flow += 1
    extra = np.zeros((r, c), dtype=np.int64)
    for (i, j), (u, ei) in cells.items():
        extra[i, j] = 1 - graph[u][ei][1]
    return extra


def balanced_split(ids, labels, sizes, rng: np.random.Generator) -> list[np.ndarray]:
    """Split ``ids`` into subsets of ``sizes`` with equal cluster proportions.

    Each cluster's members are shuffled by ``rng`` and dealt out by :func:`allocate_counts`;
    every subset is returned sorted. The subsets partition ``ids``.
    """
    ids = np.asarray(ids)
    labels = np.asarray(labels)
    if ids.shape != labels.shape or ids.ndim != 1:
        raise EdorientError(f"ids {ids.shape} and cluster labels {labels.shape} must be 1-D of one length")
    clusters, inverse = np.unique(labels, return_inverse=True)
    counts = allocate_counts(np.bincount(inverse, minlength=clusters.size), sizes)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes))]
    for c in range(clusters.size):
        members = ids[inverse == c]
        members = members[rng.permutation(members.size)]
        for s, piece in enumerate(np.split(members, np.cumsum(counts[:, c])[:-1])):
            parts[s].append(piece)
    return [np.sort(np.concatenate(p)) if p else ids[:0] for p in parts]


def split_directories(ids, n_dirs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Scheme (ii)'s directories: ``ids`` shuffled and cut into ``n_dirs`` near-equal parts."""
    ids = np.asarray(ids)
    return [np.sort(d) for d in np.array_split(ids[rng.permutation(ids.size)], int(n_dirs))]


def composition(subsets: list[np.ndarray], ids, labels, n_clusters: int | None = None) -> np.ndarray:
    """Count matrix ``(len(subsets), K)``: images of each cluster in each subset."""
    ids = np.asarray(ids)
    labels = np.asarray(labels)
    order = np.argsort(ids, kind="stable")
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    out = np.zeros((len(subsets), k), dtype=np.int64)
    for s, sub in enumerate(subsets):
        pos = np.searchsorted(ids, sub, sorter=order)
        out[s] = np.bincount(labels[order[pos]], minlength=k)
    return out


# -- the two schemes ---------------------------------------------------------------------------
@dataclass
class Group:
    """One clustered group: all training images (i) or one directory (ii)."""

    name: str
    ids: np.ndarray
    result: ClusterResult
    parts: list[np.ndarray]
    counts: np.ndarray
    """``(n_parts, K)`` images of each cluster in each part."""


@dataclass
class SchemeResult:
    """Subsets of a K-means scheme and what built them."""

    scheme: str
    subsets: list[np.ndarray]
    groups: list[Group]


FeatureFn = Callable[[np.ndarray, str], np.ndarray]




def _cluster_group(name, ids, features: FeatureFn, cfg, weights, seed, key, progress) -> Group:
    cfg = cfg.validated()
    # rows in a random order: minibatch chunks are then random samples; labels map back
    perm = seeded_rng(seed, 30, key).permutation(ids.size)
    X = features(ids[perm], name)
    res = cluster(X, cfg, progress=progress)
    labels = np.empty_like(res.labels)
    labels[perm] = res.labels
    res.labels = labels
    parts = balanced_split(ids, labels, subset_sizes(ids.size, weights), seeded_rng(seed, 31, key))
    counts = composition(parts, ids, labels, res.k)
    return Group(name=name, ids=ids, result=res, parts=parts, counts=counts)


def scheme_i(ids, features: FeatureFn, cfg: KMeansConfig, weights=SUBSET_WEIGHTS, progress: bool = False) -> SchemeResult:
    """Scheme (i): cluster all ``ids`` at once, subsets of ``weights`` with equal proportions.

    ``features(ids, group_name)`` returns the feature rows of ``ids`` in that order.
    """
    ids = np.asarray(ids)
    g = _cluster_group("all", ids, features, cfg, weights, cfg.seed, 0, progress)
    return SchemeResult(scheme=SCHEME_I, subsets=g.parts, groups=[g])


def scheme_ii(
    ids, features: FeatureFn, cfg: KMeansConfig, weights=SUBSET_WEIGHTS, n_dirs: int = N_DIRECTORIES,
    progress: bool = False,
) -> SchemeResult:
    """Scheme (ii): ``n_dirs`` random directories, each clustered and split into parts with
    equal proportions; subset ``s`` is the union of every directory's part ``s``."""
    ids = np.asarray(ids)
    if n_dirs < 1 or ids.size < n_dirs:
        raise EdorientError(f"cannot split {ids.size} images into {n_dirs} directories")
    dirs = split_directories(ids, n_dirs, seeded_rng(cfg.seed, 32))
    groups = [
        _cluster_group(roman(d + 1), dids, features, cfg, weights, cfg.seed, d + 1, progress)
        for d, dids in enumerate(dirs)
    ]
    subsets = [np.sort(np.concatenate([g.parts[s] for g in groups])) for s in range(len(weights))]
    return SchemeResult(scheme=SCHEME_II, subsets=subsets, groups=groups)


# -- tables ------------------------------------------------------------------------------------
def roman(n: int) -> str:
    """Roman numeral of 1 <= n < 40 (directory names, as the thesis)."""
    out = ""
    for v, s in ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= v:
            out, n = out + s, n - v
    return out


def cluster_names(k: int, suffix: str = "") -> list[str]:
    """A, B, C, ... (AA, AB, ... beyond 26), with an optional suffix (A1, B1 for directory I)."""
    names = []
    for i in range(k):
        s, j = "", i
        while True:
            s = chr(ord("A") + j % 26) + s
            j = j // 26 - 1
            if j < 0:
                break
        names.append(s + suffix)
    return names


def cluster_table(sizes, names, n_parts: int = 5) -> tuple[list[str], list[list]]:
    """Header and rows of the thesis' cluster tables (3.10, 3.12, ...): size = q x 5 + r."""
    rows = []
    for name, m in zip(names, sizes):
        q, r = divmod(int(m), n_parts)
        rows.append([name, int(m), q, r])
    return ["cluster", "images", f"per_part_x{n_parts}", "remainder"], rows


def composition_table(
    counts: np.ndarray, col_names, row_names=None, first: str = "subset"
) -> tuple[list[str], list[list]]:
    """Header and rows of a composition table (3.11, 3.13, 3.22): subsets x columns + totals.

    Subsets are numbered from 1 in the tables, as the thesis (stored as ``subset_0`` ...).
    """
    counts = np.asarray(counts, dtype=np.int64)
    row_names = [str(s + 1) for s in range(counts.shape[0])] if row_names is None else list(row_names)
    header = [first, *col_names, "total"]
    rows = [[rn, *map(int, row), int(row.sum())] for rn, row in zip(row_names, counts)]
    rows.append(["total", *map(int, counts.sum(axis=0)), int(counts.sum())])
    return header, rows


def markdown(header, rows, title: str | None = None) -> str:
    """A markdown table with thousands separators (as the thesis prints them)."""

    def cell(v):
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(map(str, header)) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cluster_markdown(sizes, names, title=None, n_parts: int = 5) -> str:
    """The thesis' cluster table: ``39,662 (7,932 x 5 + 2)``."""
    rows = []
    for name, m in zip(names, sizes):
        q, r = divmod(int(m), n_parts)
        rows.append([name, f"{int(m):,} ({q:,} × {n_parts}" + (f" + {r})" if r else ")")])
    return markdown(["cluster", "images"], rows, title)


def scheme_tables(result: SchemeResult) -> list[tuple[str, str, list[str], list[list]]]:
    """Every table of a scheme as ``(file stem, title, header, rows)``, in the thesis' order."""
    out = []
    n_parts = len(result.subsets)
    if result.scheme == SCHEME_I:
        g = result.groups[0]
        names = cluster_names(g.result.k)
        out.append(("clusters", "Clusters (Table 3.10)", *cluster_table(g.counts.sum(axis=0), names, n_parts)))
        out.append(("composition", "Training subsets, scheme (i) (Table 3.11)", *composition_table(g.counts, names)))
        return out
    for d, g in enumerate(result.groups):
        names = cluster_names(g.result.k, str(d + 1))
        t = 12 + 2 * d
        out.append((f"dir_{g.name}_clusters", f"Clusters of directory {g.name} (Table 3.{t})",
                    *cluster_table(g.counts.sum(axis=0), names, n_parts)))
        out.append((f"dir_{g.name}_composition", f"Directory {g.name} (Table 3.{t + 1})",
                    *composition_table(g.counts, names, first="part")))
    merged = np.stack([g.counts.sum(axis=1) for g in result.groups], axis=1)
    out.append(("composition", "Training subsets, scheme (ii) (Table 3.22)",
                *composition_table(merged, [g.name for g in result.groups])))
    return out


def scheme_markdown(result: SchemeResult) -> str:
    """All tables of a scheme as markdown, cluster tables in the thesis' ``q x 5 + r`` form."""
    blocks = []
    n_parts = len(result.subsets)
    for stem, title, header, rows in scheme_tables(result):
        if stem.endswith("clusters"):
            blocks.append(cluster_markdown([r[1] for r in rows], [r[0] for r in rows], title, n_parts))
        else:
            blocks.append(markdown(header, rows, title))
    return "\n".join(blocks)
