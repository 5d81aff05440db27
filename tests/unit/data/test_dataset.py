"""EDData and the torch Datasets: API of the contract, lazy memmaps, workers, resizing."""

import itertools
import pickle

import numpy as np
import pytest
import torch

from edorient.data import GenerateConfig, OnTheFlyDataset, open_dataset, write_subsets
from edorient.errors import EdorientError
from edorient.structures import get_crystal

SIZE = 32


def test_contract_attributes(thesis_dir, random_dir, single_dir):
    t, r, s = open_dataset(thesis_dir), open_dataset(random_dir), open_dataset(single_dir)
    assert (t.mode, t.n_grains, t.image_size, len(t)) == ("thesis", 2, SIZE, 66)
    assert (r.mode, r.n_grains, len(r)) == ("random", 2, 30)
    assert (s.mode, s.n_grains, len(s)) == ("single", 1, 20)


def test_thesis_labels_in_pair_order(thesis_dir):
    data = open_dataset(thesis_dir)
    pairs = list(itertools.combinations(range(12), 2))  # independent enumeration
    single = np.load(thesis_dir / "labels" / "directions.npy")[:, 0]
    ids = np.arange(66)
    lab = data.labels(ids)
    assert np.array_equal(lab[:, 0], single[[p[0] for p in pairs]])  # A = first of the pair
    assert np.array_equal(lab[:, 1], single[[p[1] for p in pairs]])
    assert np.allclose(data.ratios(ids), 0.5)


def test_index_api(thesis_dir):
    data = open_dataset(thesis_dir)
    tr, va, tv, te = (data.index("random", p) for p in ("train", "val", "trainval", "test"))
    assert tr.dtype == np.int64 and np.array_equal(np.union1d(tr, va), tv)
    assert np.intersect1d(tv, te).size == 0 and tv.size + te.size == 66
    sub = data.index("random", "trainval", subset=0, scheme="thesis")
    assert np.isin(sub, tv).all()
    assert np.array_equal(np.union1d(data.index("random", "train", 0), data.index("random", "val", 0)), sub)
    assert np.array_equal(data.index("random", "test", subset=3), te)
    assert np.array_equal(np.sort(np.concatenate(data.test_subsets("random"))), te)
    assert len(data.test_subsets("random", n=2)) == 2
    assert data.schemes("random") == ["equal", "thesis"]
    with pytest.raises(EdorientError, match="unknown split"):
        data.index("kfold", "train")
    with pytest.raises(EdorientError, match="unknown subset scheme"):
        data.index("random", "train", subset=0, scheme="kmeans")
    with pytest.raises(EdorientError, match="subset 5 does not exist"):
        data.index("random", "train", subset=5)
    with pytest.raises(EdorientError, match="unknown part"):
        data.index("random", "all")


def test_disjoint_split_on_the_data_set(thesis_dir):
    data = open_dataset(thesis_dir)
    test = set(data.records(data.index("disjoint", "test")).ravel().tolist())
    train = set(data.records(data.index("disjoint", "trainval")).ravel().tolist())
    assert test and train and not test & train


def test_write_subsets_adds_a_scheme(tmp_path, thesis_dir):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(thesis_dir, root)
    data = open_dataset(root)
    tv = data.index("random", "trainval")
    write_subsets(root, "random", "kmeans1", [tv[::2], tv[1::2]], seed=0)
    assert "kmeans1" in data.schemes("random")
    assert np.array_equal(data.index("random", "trainval", subset=1, scheme="kmeans1"), tv[1::2])
    with pytest.raises(EdorientError, match="outside"):
        write_subsets(root, "random", "bad", [data.index("random", "test")], seed=0)


def test_torch_items(thesis_dir, single_dir):
    data = open_dataset(thesis_dir)
    ds = data.torch_dataset(ids=[5, 9])
    x, y, i = ds[1]
    assert x.shape == (1, SIZE, SIZE) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (2, 3) and torch.equal(y, torch.from_numpy(data.labels([9])[0]))
    assert i.dtype == torch.int64 and int(i) == 9
    assert torch.equal(x[0], torch.from_numpy(data.image(9)))
    x1, y1, _ = open_dataset(single_dir).torch_dataset()[0]
    assert x1.shape == (1, SIZE, SIZE) and y1.shape == (1, 3)
    with pytest.raises(EdorientError):
        data.torch_dataset(ids=[66])


def test_resize_is_area_average(thesis_dir):
    data = open_dataset(thesis_dir)
    x16 = data.torch_dataset(resize=16)[3][0]
    full = data.image(3)
    block = full.reshape(16, 2, 16, 2).mean(axis=(1, 3))  # 2 x 2 block means by hand
    assert x16.shape == (1, 16, 16)
    np.testing.assert_allclose(x16[0].numpy(), block, atol=1e-6)
    assert data.torch_dataset(resize=8)[0][0].shape == (1, 8, 8)


def test_pickled_dataset_carries_no_maps(thesis_dir):
    ds = open_dataset(thesis_dir).torch_dataset()
    ds[0]  # opens maps in this process
    assert ds._reader._open
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader._open == {}
    assert len(pickle.dumps(ds)) < 4000  # ids + scalars, no image data


def test_dataloader_workers_see_the_same_samples(thesis_dir):
    ds = open_dataset(thesis_dir).torch_dataset()

    def run(workers):
        xs, ids = [], []
        for x, _, i in torch.utils.data.DataLoader(ds, batch_size=7, num_workers=workers):
            xs.append(x)
            ids.append(i)
        return torch.cat(xs), torch.cat(ids)

    x0, i0 = run(0)
    x2, i2 = run(2)
    assert i0.tolist() == list(range(66)) and torch.equal(i0, i2) and torch.equal(x0, x2)


def test_on_the_fly_is_deterministic_and_fresh_per_epoch():
    cfg = GenerateConfig(mode="random", n=6, image_size=SIZE, seed=2, ratio=(0.3, 0.7), noise_dose=300.0)
    ds = OnTheFlyDataset(cfg)
    x, y, i = ds[4]
    assert x.shape == (1, SIZE, SIZE) and y.shape == (2, 3) and int(i) == 4
    assert torch.equal(pickle.loads(pickle.dumps(ds))[4][0], x)
    laue = get_crystal("anatase").laue
    assert laue.in_sector(y.double().numpy(), atol=1e-6).all()
    ds.set_epoch(1)
    assert not torch.equal(ds[4][0], x)
    with pytest.raises(EdorientError, match="thesis"):
        OnTheFlyDataset(GenerateConfig(mode="thesis", n=10))


@pytest.mark.parametrize("where", ["files", "shards"])
def test_meta_paths_outside_the_data_set_are_refused(random_dir, tmp_path, where):
    import json
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(random_dir, root)
    outside = tmp_path / "secret.npy"
    np.save(outside, np.zeros((30, 2, 3), np.float32))
    meta = json.loads((root / "meta.json").read_text())
    if where == "files":
        rel = next(iter(meta["files"]))
        meta["files"]["../secret.npy"] = meta["files"].pop(rel)
    else:
        meta["shards"][0]["file"] = "../secret.npy"
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(EdorientError, match="outside the data set"):
        data = open_dataset(root)
        data.verify(full=False)
        data.image(0)
        data.labels(np.arange(3))
