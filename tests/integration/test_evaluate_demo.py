"""``edorient evaluate`` and a tiny ``edorient demo`` end to end (about a minute together)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edorient.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.cli]


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["-q", "demo", "--tiny", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_demo_writes_report_and_config(tiny_demo):
    report = (tiny_demo / "report.md").read_text()
    assert "random split" in report and "disjoint split" in report
    cfg = json.loads((tiny_demo / "config.json").read_text())
    assert cfg["demo"]["n_orientations"] == 20 and "total" in cfg["timings_s"]
    for split in ("random", "disjoint"):
        d = tiny_demo / f"eval_{split}"
        for name in ("report.md", "results.json", "results.csv", "config.json", "error_histograms.png",
                     "stereographic_errors.png", "worst_images.png", "predictions.npz"):
            assert (d / name).is_file(), name
        res = json.loads((d / "results.json").read_text())
        assert res["n_subsets"] == 5 and res["split"] == split
        # the mean row is the mean of the five subset rows (the thesis' layout)
        subs = [b["method1"]["mae_1"] for b in res["subsets"]]
        assert res["mean"]["method1"]["mae_1"] == pytest.approx(np.mean(subs))
        assert {"oracle", "score"} <= set(res["stage2"]["results"])
        assert "single-crystal CNN" in res["stage2"]["results"]["oracle"]


def test_disjoint_test_orientations_unseen_in_training(tiny_demo):
    from edorient.data import open_dataset

    data = open_dataset(tiny_demo / "data_thesis")
    train = data.records(data.index("disjoint", "trainval"))
    test = data.records(data.index("disjoint", "test"))
    assert not set(np.unique(train)) & set(np.unique(test))


def test_evaluate_cli_rewrites_results(tiny_demo, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["-q", "evaluate", "--run", str(tiny_demo / "run_bicrystal_random"), "--data",
               str(tiny_demo / "data_thesis"), "--stage2-max", "0", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| mean |" in text and "MAE_1" in text
    res = json.loads((out / "results.json").read_text())
    pred = np.load(out / "predictions.npz")
    assert pred["pred"].shape == pred["true"].shape == (res["n_test"], 2, 3)
    assert "stage2" not in res


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "--run", "nowhere", "--data", "nowhere"], "not found"),
        (["demo", "--tiny", "-n", "2"], "at least 3"),
    ],
)
def test_bad_arguments(argv, needle, capsys, tmp_path):
    rc = main(argv + (["--out", str(tmp_path / "o")]))
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_evaluate_missing_data(tiny_demo, tmp_path, capsys):
    rc = main(["evaluate", "--run", str(tiny_demo / "run_bicrystal_random"), "--data", str(tmp_path / "none"),
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
