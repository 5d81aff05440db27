"""``edorient cluster`` end to end on a tiny thesis-mode data set (30 orientations, 32 x 32)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edorient.cli.main import main

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from edorient.data import GenerateConfig, generate_dataset

    root = tmp_path_factory.mktemp("kmeans") / "ds"
    generate_dataset(GenerateConfig(mode="thesis", n=30, image_size=32, seed=4), root, progress=False)
    return root


def _read_csv(path):
    with open(path) as fh:
        return list(csv.reader(fh))


def test_cluster_scheme_i_end_to_end(dataset, tmp_path, capsys):
    from edorient.data import open_dataset

    out = tmp_path / "out"
    rc = main(["-q", "cluster", "--data", str(dataset), "--kmax", "4", "--resize", "16",
               "--seed", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Table 3.11" in text and "kmeans_i" in text
    data = open_dataset(dataset)
    trainval = data.index("random", "trainval")
    subsets = [data.index("random", "trainval", subset=k, scheme="kmeans_i") for k in range(5)]
    # the stored subsets partition the training set, in the thesis' proportions
    assert np.array_equal(np.sort(np.concatenate(subsets)), trainval)
    w = np.array([100_000] * 4 + [89_500])
    assert np.all(np.abs(np.array([s.size for s in subsets]) - trainval.size * w / w.sum()) <= 1)
    for k in range(5):   # the data layer's 8:2 train/val inside every subset
        tr = data.index("random", "train", subset=k, scheme="kmeans_i")
        va = data.index("random", "val", subset=k, scheme="kmeans_i")
        assert np.array_equal(np.sort(np.concatenate([tr, va])), subsets[k])
    # equal proportions: recount the clusters of every subset from clusters.npz
    cl = np.load(out / "clusters.npz")
    lab = dict(zip(cl["ids"].tolist(), cl["labels"].tolist()))
    assert sorted(lab) == trainval.tolist()
    k_chosen = max(lab.values()) + 1
    sizes = np.bincount(list(lab.values()), minlength=k_chosen)
    for s in subsets:
        counts = np.bincount([lab[i] for i in s.tolist()], minlength=k_chosen)
        assert np.all(np.abs(counts - s.size * sizes / trainval.size) < 1)
    # the composition CSV says the same
    rows = _read_csv(out / "composition.csv")
    assert rows[0][0] == "subset" and rows[-1][0] == "total" and int(rows[-1][-1]) == trainval.size
    assert [int(r[-1]) for r in rows[1:6]] == [s.size for s in subsets]
    sse = _read_csv(out / "sse.csv")
    assert sse[0] == ["group", "k", "sse", "chosen", "seconds"] and len(sse) == 5
    assert [int(r[3]) for r in sse[1:]].index(1) + 1 == k_chosen
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["scheme"] == "kmeans_i" and cfg["resize"] == 16 and cfg["kmeans"]["seed"] == 2
    assert cfg["groups"][0]["k"] == k_chosen and cfg["peak_rss_gb"] > 0
    assert (out / "elbow.png").stat().st_size > 1000 and (out / "tables.md").is_file()
    assert not list(out.glob(".*tmp*"))


def test_cluster_scheme_ii_minibatch(dataset, tmp_path):
    from edorient.data import open_dataset

    out = tmp_path / "out2"
    rc = main(["-q", "cluster", "--data", str(dataset), "--scheme", "ii", "--kmax", "0", "--k", "2",
               "--resize", "8", "--algorithm", "minibatch", "--batch-size", "32", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    data = open_dataset(dataset)
    trainval = data.index("random", "trainval")
    subsets = [data.index("random", "trainval", subset=k, scheme="kmeans_ii") for k in range(5)]
    assert np.array_equal(np.sort(np.concatenate(subsets)), trainval)
    rows = _read_csv(out / "composition.csv")   # Table 3.22: subsets x directories I..V
    assert rows[0] == ["subset", "I", "II", "III", "IV", "V", "total"]
    assert [int(r[-1]) for r in rows[1:6]] == [s.size for s in subsets]
    assert len(list(out.glob("dir_*_composition.csv"))) == 5
    assert not list(out.glob(".features_*"))   # the temporary feature files are gone


@pytest.mark.parametrize(
    "extra, match",
    [(["--kmax", "1"], "kmax must be >= 2"),
     (["--kmax", "2"], "--kmax >= 3"),
     (["--resize", "12"], "must divide"),
     (["--kmax", "4", "--k", "1000", "--resize", "16"], "too few")],
)
def test_cluster_bad_input(dataset, tmp_path, capsys, extra, match):
    rc = main(["-q", "cluster", "--data", str(dataset), "--out", str(tmp_path / "o"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_cluster_missing_data(tmp_path, capsys):
    rc = main(["-q", "cluster", "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1
