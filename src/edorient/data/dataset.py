"""Reading data sets: :func:`open_dataset`, :class:`EDData` and the torch Datasets.

Memory stays flat whatever the size of the data set: shards are opened with
``np.load(mmap_mode="r")`` lazily, in the process that reads them (each DataLoader worker
opens its own maps after it starts), and a thesis pair is composed from its two single-crystal
records only when it is read. A torch Dataset holds the sample ids and a few scalars; pickling
it to a worker never copies image data.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edorient.data import _storage as st
from edorient.data import splits as sp
from edorient.data.pairs import pair_from_index
from edorient.errors import EdorientError

log = logging.getLogger(__name__)

#: Shards up to this many bytes in all are hashed when a data set is opened (verify="auto").
AUTO_VERIFY_BYTES = 2 << 30
VERIFY = ("auto", "full", "size", "none")


class _Reader:
    """Lazy, per-process access to a data set's records and labels (picklable, no data inside)."""

    def __init__(self, root: Path, meta: dict):
        self.root = Path(root)
        self.mode = meta["mode"]
        self.n_records = int(meta["n_records"])
        self.shard_size = int(meta["shard_size"])
        self.image_size = int(meta["image_size"])
        self.dtype = meta["dtype"]
        self._open: dict = {}
        self._pid = os.getpid()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = {}
        state["_pid"] = None
        return state

    def _maps(self) -> dict:
        if self._pid != os.getpid():  # a new process (DataLoader worker): open our own maps
            self._open = {}
            self._pid = os.getpid()
        return self._open

    def _load(self, rel: str, shape: tuple | None = None) -> np.ndarray:
        maps = self._maps()
        arr = maps.get(rel)
        if arr is None:
            path = st.inside(self.root, rel)
            try:
                arr = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise EdorientError(
                    f"missing file {path}; rerun edorient generate with the same arguments"
                ) from None
            except ValueError as exc:
                raise EdorientError(
                    f"{path} is truncated or corrupt ({exc}); rerun edorient generate with the "
                    "same arguments and --verify to rebuild it"
                ) from None
            if shape is not None and arr.shape != shape:
                raise EdorientError(
                    f"{path} has shape {arr.shape}, expected {shape}; rerun edorient generate "
                    "with the same arguments and --verify to rebuild it"
                )
            maps[rel] = arr
        return arr

    def label(self, name: str) -> np.ndarray:
        return self._load(st.label_name(name))

    def _shard(self, k: int) -> np.ndarray:
        count = min(self.shard_size, self.n_records - k * self.shard_size)
        return self._load(st.shard_name(k), (count, self.image_size, self.image_size))

    def record(self, r: int) -> np.ndarray:
        """Stored image of record ``r`` (a view into its shard's memmap)."""
        k, off = divmod(int(r), self.shard_size)
        return self._shard(k)[off]

    def records_float(self, records: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n, H, W) float32 copies of stored records (one fancy read per shard, into ``out``)."""
        records = np.asarray(records, dtype=np.int64)
        if out is None:
            out = np.empty((records.size, self.image_size, self.image_size), dtype=np.float32)
        shard = records // self.shard_size
        for k in np.unique(shard):
            sel = np.flatnonzero(shard == k)
            local = records[sel] - k * self.shard_size
            rows = self._shard(int(k))
            if sel[-1] - sel[0] + 1 == sel.size and rows.dtype == out.dtype:
                np.take(rows, local, axis=0, out=out[sel[0] : sel[-1] + 1])  # one copy
            else:
                out[sel] = rows[local]
        return out

    def record_ids(self, ids) -> np.ndarray:
        """(n, g) records of samples ``ids`` (pairs (A, B) in thesis mode)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.mode == "thesis":
            i, j = pair_from_index(ids, self.n_records)
            return np.stack([i, j], axis=1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_records):
            raise EdorientError(f"sample id out of range [0, {self.n_records})")
        return ids[:, None]

    def _linear_from_records(self, rec: np.ndarray) -> np.ndarray:
        """Thesis pairs (n, 2) of records -> (n, H, W) float32 ``0.5 A + 0.5 B``.

        The arithmetic of :func:`edorient.render.compose` (``float32(0.5) A + float32(0.5) B``),
        done in place to spare copies of a batch.
        """
        half = np.float32(0.5)
        out = self.records_float(rec[:, 0])
        out *= half
        b = self.records_float(rec[:, 1])
        b *= half
        out += b
        return out

    def linear_many(self, samples) -> np.ndarray:
        """(n, H, W) float32 linear intensity of samples (approximate outside thesis mode)."""
        from edorient.render import inverse_display_transform

        rec = self.record_ids(samples)
        if self.mode == "thesis":
            return self._linear_from_records(rec)
        return inverse_display_transform(self._stored_display(rec[:, 0]))

    def _stored_display(self, records: np.ndarray) -> np.ndarray:
        images = self.records_float(records)
        if self.dtype == "uint8":
            images /= np.float32(255.0)
        return images

    def display_many(self, samples, quantize: bool = True) -> np.ndarray:
        """(n, H, W) float32 images in [0, 1] after the display transform.

        Thesis pairs are composed in linear intensity, transformed, and (``quantize``) rounded to
        the 256 levels of a stored uint8 image, so that they look like every other image
        edorient stores or reads.
        """
        from edorient.render import display_transform

        rec = self.record_ids(samples)
        if self.mode != "thesis":
            return self._stored_display(rec[:, 0])
        linear = self._linear_from_records(rec)
        shown = display_transform(linear, out=linear)
        if not quantize:
            return shown
        # = to_uint8(shown) / 255 (round half to even, as np.round), in place
        shown *= np.float32(255.0)
        np.rint(shown, out=shown)
        shown /= np.float32(255.0)
        return shown

    def labels(self, ids) -> np.ndarray:
        rec = self.record_ids(ids)
        d = self.label("directions")
        if self.mode == "thesis":
            return np.stack([d[rec[:, 0], 0], d[rec[:, 1], 0]], axis=1).astype(np.float32)
        return np.asarray(d[rec[:, 0]], dtype=np.float32)


def open_dataset(root: str | Path, verify: str = "auto") -> "EDData":
    """Open the data set in folder ``root``.

    Parameters
    ----------
    root
        A folder written by ``edorient generate`` (:func:`edorient.data.generate_dataset`).
    verify
        ``"full"``: hash every shard and label file against meta.json; ``"size"``: check
        only their sizes; ``"none"``; ``"auto"`` (default): full when the shards hold at most
        2 GiB (thesis sets), sizes otherwise (use :meth:`EDData.verify` or
        ``edorient inspect --verify`` for a full check of a big set).

    Whatever ``verify``, meta.json must be complete and consistent with itself, and every shard
    and label file must have the shape and dtype it implies (read from the .npy headers).

    Raises
    ------
    EdorientError
        If ``root`` is missing, not a data set, incomplete, meta.json is damaged or lies, or a
        file fails its check.
    """
    if verify not in VERIFY:
        raise EdorientError(f"unknown verify level {verify!r}: choose one of {', '.join(VERIFY)}")
    root = Path(root)
    meta = st.read_meta(root)
    st.check_meta(root, meta)
    if not meta.get("complete"):
        done = sum((root / st.sidecar_name(k)).is_file() for k in range(int(meta["n_shards"])))
        raise EdorientError(
            f"data set {root} is incomplete ({done} of {meta['n_shards']} shards); rerun "
            "edorient generate with the same arguments to finish it"
        )
    st.check_arrays(root, meta)  # shapes and dtypes of every file, from their headers
    data = EDData(root, meta)
    if verify != "none":
        total = sum(int(s["bytes"]) for s in meta["shards"])
        data.verify(full=verify == "full" or (verify == "auto" and total <= AUTO_VERIFY_BYTES))
    return data


class EDData:
    """A data set on disk: sample ids, splits, labels, images, torch Datasets.

    Samples are thesis pairs (``mode == "thesis"``: C(N, 2) of them, sample ``k`` is the
    pair :func:`~edorient.data.pairs.pair_from_index` ``(k, N)``, grain A first) or stored
    images (``"random"``, ``"single"``). Labels are beam directions reduced to the
    fundamental sector, float32 (n, n_grains, 3), grain A first.
    """

    def __init__(self, root: str | Path, meta: dict):
        self.root = Path(root)
        self.meta = meta
        self._reader = _Reader(self.root, meta)

    # -- description -----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``"thesis"``, ``"random"`` or ``"single"``."""
        return self.meta["mode"]

    @property
    def n_grains(self) -> int:
        """Grains per sample: 2 (thesis, random) or 1 (single)."""
        return int(self.meta["n_grains"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def n_records(self) -> int:
        """Stored images (thesis mode: the N single-crystal orientations)."""
        return int(self.meta["n_records"])

    @property
    def config(self) -> dict:
        """The resolved generation configuration (meta.json ``config``)."""
        return self.meta["config"]

    def __len__(self) -> int:
        return int(self.meta["n_samples"])

    def __repr__(self) -> str:
        return f"EDData({str(self.root)!r}, mode={self.mode!r}, samples={len(self)}, image_size={self.image_size})"

    def verify(self, full: bool = True) -> None:
        """Check every shard and label file against meta.json (hash when ``full``, else size)."""
        for rel, info in self.meta["files"].items():
            st.check_file(self.root, rel, info, full=full)
        for shard in self.meta["shards"]:
            st.check_file(self.root, shard["file"], shard, full=full)

    # -- splits ----------------------------------------------------------------------------
    def schemes(self, split: str = "random") -> list[str]:
        """Subset schemes stored for ``split`` (``thesis``, ``equal``, K-means ones later)."""
        folder = self.root / st.SPLITS / self._split(split)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def _split(self, split: str) -> str:
        if split not in sp.SPLITS:
            raise EdorientError(f"unknown split {split!r}: choose one of {', '.join(sp.SPLITS)}")
        return split

    def _ids(self, rel: str) -> np.ndarray:
        path = self.root / st.SPLITS / rel
        if not path.is_file():
            raise EdorientError(f"missing index file {path}; rerun edorient generate with the same arguments")
        return np.load(path).astype(np.int64)

    def index(
        self, split: str = "random", part: str = "train", subset: int | None = None, scheme: str = "thesis"
    ) -> np.ndarray:
        """Sorted int64 sample ids of one part of a split.

        Parameters
        ----------
        split
            ``"random"`` (thesis hold-out) or ``"disjoint"`` (test orientations unseen in
            training).
        part
            ``"train"``, ``"val"`` (8:2 inside the training set), ``"trainval"`` or ``"test"``.
        subset
            ``None``: the whole training set; ``k``: training subset ``k`` (from 0) of
            ``scheme`` (``"test"`` is the same for every subset).
        scheme
            ``"thesis"`` (100k/100k/100k/100k/89.5k proportions), ``"equal"`` (5 equal) or
            another stored scheme (:meth:`schemes`).
        """
        split = self._split(split)
        if part not in sp.PARTS:
            raise EdorientError(f"unknown part {part!r}: choose one of {', '.join(sp.PARTS)}")
        if subset is None or part == "test":
            return self._ids(f"{split}/{part}.npy")
        schemes = self.schemes(split)
        if scheme not in schemes:
            raise EdorientError(f"unknown subset scheme {scheme!r} for split {split}: choose one of {', '.join(schemes)}")
        n_sub = len(list((self.root / st.SPLITS / split / scheme).glob("subset_*_train.npy")))
        if not 0 <= int(subset) < n_sub:
            raise EdorientError(f"subset {subset} does not exist: scheme {scheme!r} has subsets 0..{n_sub - 1}")
        suffix = "" if part == "trainval" else f"_{part}"
        return self._ids(f"{split}/{scheme}/subset_{int(subset)}{suffix}.npy")

    def test_subsets(self, split: str = "random", n: int = 5) -> list[np.ndarray]:
        """The test set as ``n`` subsets (the stored ones when ``n`` is 5, as the thesis)."""
        split = self._split(split)
        if n == sp.N_TEST_SUBSETS:
            return [self._ids(f"{split}/test_{k}.npy") for k in range(n)]
        if int(n) < 1:
            raise EdorientError(f"number of test subsets must be >= 1, got {n}")
        test = self.index(split, "test")
        perm = np.random.default_rng(np.random.SeedSequence(int(self.meta["seed"]), spawn_key=(13, int(n)))).permutation(test.size)
        return [np.sort(s) for s in np.array_split(test[perm], int(n))]

    # -- labels and images -----------------------------------------------------------------
    def records(self, ids) -> np.ndarray:
        """(n, n_grains) record ids of samples (thesis: the pair's two orientations, A first)."""
        return self._reader.record_ids(ids)

    def labels(self, ids) -> np.ndarray:
        """(n, n_grains, 3) float32 sector-reduced beam directions, grain A first."""
        return self._reader.labels(ids)

    def _per_grain(self, name: str, ids) -> np.ndarray:
        rec = self.records(ids)
        arr = self._reader.label(name)
        if self.mode == "thesis":
            return np.stack([arr[rec[:, 0], 0], arr[rec[:, 1], 0]], axis=1)
        return np.asarray(arr[rec[:, 0]])

    def inplane(self, ids) -> np.ndarray:
        """(n, n_grains) float32 in-plane angles (degrees) of ``R = Rz(θ) R0(d)``."""
        return self._per_grain("inplane_deg", ids).astype(np.float32)

    def rotations(self, ids) -> np.ndarray:
        """(n, n_grains, 3, 3) float64 orientations R of the grains."""
        return self._per_grain("rotations", ids).astype(np.float64)

    def ratios(self, ids) -> np.ndarray:
        """(n,) float32 intensity weight of grain A (0.5 for thesis pairs, 1 for single)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.mode == "thesis":
            self.records(ids)  # range check
            return np.full(ids.size, 0.5, dtype=np.float32)
        return np.asarray(self._reader.label("ratio")[self.records(ids)[:, 0]], dtype=np.float32)

    def image(self, sample: int, quantize: bool = True) -> np.ndarray:
        """(H, W) float32 image in [0, 1] after the display transform (what a model sees)."""
        return self._reader.display_many([int(sample)], quantize)[0]

    def linear_image(self, sample: int) -> np.ndarray:
        """(H, W) float32 linear intensity of a sample (Method 2, stage 2).

        Exact in thesis mode (``0.5 A + 0.5 B`` of the stored records); in random and single
        modes the inverse display transform of the stored image (quantised, clipped at 1).
        """
        return self._reader.linear_many([int(sample)])[0]

    def record_image(self, record: int) -> np.ndarray:
        """The stored array of one record (a copy; thesis mode: one crystal, linear)."""
        return np.array(self._reader.record(int(record)))

    def torch_dataset(self, ids=None, resize: int | None = None, quantize: bool = True) -> "EDTorchDataset":
        """A torch Dataset over ``ids`` (default: every sample).

        Items are ``(image (1, S, S) float32 in [0, 1], target (n_grains, 3) float32, id int64)``;
        ``resize`` gives ``S`` (area averaging, e.g. 112, 56, 28 for the thesis' experiment 3).
        """
        return EDTorchDataset(self, ids, resize=resize, quantize=quantize)


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """A batch (n, C, H, W) resampled to (n, C, size, size) by area averaging (None: as it is)."""
    if size is None or size == images.shape[-1]:
        return images
    return F.interpolate(images, size=(size, size), mode="area")


def _check_resize(resize: int | None) -> int | None:
    if resize is None:
        return None
    if int(resize) != resize or resize < 1:
        raise EdorientError(f"resize must be a positive number of pixels, got {resize}")
    return int(resize)


class EDTorchDataset(torch.utils.data.Dataset):
    """Samples of an :class:`EDData` as tensors; memmaps open lazily in each worker."""

    def __init__(self, data: EDData, ids=None, resize: int | None = None, quantize: bool = True):
        self._reader = data._reader
        self.mode = data.mode
        self.n_grains = data.n_grains
        n = len(data)
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise EdorientError(f"sample ids must lie in [0, {n}) for data set {data.root}")
        self.ids = ids
        self.resize = _check_resize(resize)
        self.quantize = bool(quantize)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list:
        """A batch at once (the DataLoader calls this): one read per shard, vectorised maths."""
        samples = self.ids[np.asarray(indices, dtype=np.int64)]
        images = torch.from_numpy(self._reader.display_many(samples, self.quantize))[:, None]
        images = _resize(images, self.resize)
        targets = torch.from_numpy(self._reader.labels(samples))
        ids = torch.from_numpy(samples)
        return [(images[k], targets[k], ids[k]) for k in range(samples.size)]


class OnTheFlyDataset(torch.utils.data.Dataset):
    """Random or single mode rendered when read: nothing on disk, fresh orientations.

    Sample ``i`` of epoch ``e`` is drawn from the stream ``SeedSequence(seed, (2, e, i))``
    (orientations, ratio, noise), so it is the same in every worker and every run; call
    :meth:`set_epoch` for new samples. The simulator is built lazily in each process.
    Items are as :class:`EDTorchDataset`'s.
    """

    def __init__(self, config, length: int | None = None, resize: int | None = None, epoch: int = 0):
        from edorient.data.generate import GenerateConfig

        if not isinstance(config, GenerateConfig):
            raise EdorientError("OnTheFlyDataset needs a GenerateConfig")
        cfg = config.resolved()
        if cfg.mode == "thesis":
            raise EdorientError("thesis mode is a finite set of pairs: generate it (edorient generate --mode thesis)")
        self.config = cfg
        self.length = cfg.n if length is None else int(length)
        self.resize = _check_resize(resize)
        self.epoch = int(epoch)
        self.n_grains = 2 if cfg.mode == "random" else 1
        self._state: dict = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getstate__(self):
        return dict(self.__dict__, _state={})

    def __len__(self) -> int:
        return self.length

    def _renderer(self):
        if self._state.get("pid") != os.getpid():
            from edorient.data.generate import Renderer, _crystal_meta

            _, xtal = _crystal_meta(self.config.crystal)
            self._state = {"pid": os.getpid(), "renderer": Renderer(self.config), "laue": xtal.laue}
        return self._state["renderer"], self._state["laue"]

    def sample(self, index: int) -> tuple[np.ndarray, dict]:
        """(H, W) float32 image in [0, 1] and the labels of sample ``index``."""
        images, labels = self.samples([index])
        return images[0], labels[0]

    def samples(self, indices) -> tuple[np.ndarray, list[dict]]:
        """(n, H, W) float32 images in [0, 1] and the labels of samples ``indices``: each drawn
        from its own stream (the same as one by one), the images rendered in one batch."""
        from edorient.data.generate import sample_labels

        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self.length:
                raise IndexError(i)
        renderer, laue = self._renderer()
        rngs = [np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(2, self.epoch, i)))
                for i in indices]
        labs = [sample_labels(self.config, laue, rng, m=1) for rng in rngs]  # the labels first in each stream
        images = renderer.records(np.concatenate([lab["rotations"] for lab in labs]),
                                  np.concatenate([lab["ratio"] for lab in labs]), range(len(indices)), rngs=rngs)
        images = images.astype(np.float32) / np.float32(255.0) if images.dtype == np.uint8 else images.astype(np.float32)
        return images, [{k: v[0] for k, v in lab.items()} for lab in labs]

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list:
        """A batch at once (the DataLoader calls this): one rendering call for the batch."""
        images, labels = self.samples(indices)
        x = _resize(torch.from_numpy(images)[:, None], self.resize)
        return [(x[k], torch.from_numpy(np.ascontiguousarray(lab["directions"], dtype=np.float32)),
                 torch.tensor(int(i), dtype=torch.int64)) for k, (i, lab) in enumerate(zip(indices, labels))]



class InMemoryDataset(torch.utils.data.TensorDataset):
    """Simulated images held in memory: quick experiments and tests, no files.

    ``n`` samples of :class:`OnTheFlyDataset` (real simulator; ``mode`` ``"random"`` for
    bicrystals, ``"single"`` for single crystals) rendered once. ``targets`` holds the labels
    as a numpy array (n, n_grains, 3).

    Examples
    --------
    >>> ds = InMemoryDataset(4, image_size=32, mode="random", seed=0)
    >>> x, y, i = ds[0]
    >>> tuple(x.shape), tuple(y.shape), ds.targets.shape
    ((1, 32, 32), (2, 3), (4, 2, 3))
    """

    def __init__(self, n: int, image_size: int = 64, mode: str = "random", seed: int = 0, **config) -> None:
        from edorient.data.generate import GenerateConfig

        source = OnTheFlyDataset(GenerateConfig(mode=mode, n=max(int(n), 2), image_size=image_size, seed=seed, **config),
                                 length=int(n))
        items = [source[i] for i in range(int(n))]
        images = torch.stack([it[0] for it in items])
        targets = torch.stack([it[1] for it in items])
        ids = torch.stack([it[2] for it in items])
        super().__init__(images, targets, ids)
        self.targets = targets.numpy()
        self.n_grains = source.n_grains
