"""``edorient reproduce`` end to end at a tiny scale (23 orientations, 32 px, one epoch a stage).

The expected values come from the thesis (its sizes and numbers) or are recomputed here from
the checkpoints and labels with plain numpy, never read back from the code under test.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from edorient.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.cli]

TINY = ["--scale", "0.0005", "--size", "32", "--epoch-scale", "0.001", "--kmax", "4", "--gen-workers", "1",
        "--no-plots", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    rc = main(["-q", "reproduce", *TINY, "--out", str(out)])
    assert rc == 0
    return out


# -- the scale rule ------------------------------------------------------------------------------
def test_scale_rule_matches_the_thesis_at_one_and_hand_counts_below():
    from edorient.experiments import ReproduceConfig, make_plan, orientations_for_scale, scaled_epochs

    assert orientations_for_scale(1.0) == 1000  # C(1000, 2) = 499,500 exactly
    # C(142, 2) = 10,011 >= 0.02 x 499,500 = 9,990 > C(141, 2) = 9,870
    assert orientations_for_scale(0.02) == 142
    assert scaled_epochs(500, 1.0) == 500 and scaled_epochs(50, 1.0) == 50 and scaled_epochs(50, 0.001) == 1
    plan = make_plan(ReproduceConfig(scale=1.0, device="cpu").resolved())
    assert plan.n_images == 499_500 and plan.pre_test == 50_000 and plan.ch4_test == 10_000
    assert plan.pre_sets == [100_000, 100_000, 100_000, 100_000, 49_500]
    assert plan.ch4_subsets["thesis"] == [100_000, 100_000, 100_000, 100_000, 89_500]
    assert plan.ch4_subsets["equal"] == [97_900] * 5
    epochs = {s.key: s.epochs for s in plan.stages}
    assert epochs["pre1"] == 500 and epochs["pre2_dense_only/stage_03"] == 50
    assert epochs["exp1_kmeans_ii/stage_01"] == 500 and epochs["exp2_equal/stage_05"] == 50
    assert epochs["exp3_28"] == 500
    assert all(s.time_limit_s == 0 for s in plan.stages)  # no budget on the GPU profile
    assert len(plan.stages) == 1 + 2 * 4 + 4 * 5 + 2


def test_time_budget_is_split_and_spent_exactly():
    from edorient.experiments import ReproduceConfig, make_plan

    plan = make_plan(ReproduceConfig(scale=0.02, time_budget_s=1000).resolved())
    assert sum(s.time_limit_s for s in plan.stages) == pytest.approx(1000)
    first, later = plan.stage("exp1_random/stage_01"), plan.stage("exp1_random/stage_02")
    # 10 epochs vs 1 epoch on subsets of (nearly) the same size
    assert first.time_limit_s / later.time_limit_s == pytest.approx(10 * first.n_train / later.n_train)


# -- the run -------------------------------------------------------------------------------------
def test_every_thesis_table_is_written(run):
    for folder, numbers in (("pre", [f"3_{k}" for k in range(1, 10)]), ("exp1", [f"4_{k}" for k in range(1, 9)]),
                            ("exp2", ["4_9", "4_10"]), ("exp3", ["4_11", "4_12"])):
        for n in numbers:
            assert (run / folder / f"table_{n}.csv").is_file(), (folder, n)
        assert (run / folder / "tables.md").is_file() and (run / folder / "tables.json").is_file()
    summary = (run / "summary.md").read_text()
    assert "Table 4.13" in summary and "Table 4.14" in summary
    # the thesis' own numbers stand beside ours (Tables 4.13 and 4.14 of the thesis)
    for value in ("0.2325", "0.9669", "0.1641", "0.6498"):
        assert value in summary
    assert "not the thesis'" in summary
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["plan"]["n_orientations"] == 23  # C(23, 2) = 253 >= 249.75 > C(22, 2) = 231
    assert cfg["plan"]["n_images"] == 253


def _csv(path):
    with open(path) as fh:
        return list(csv.reader(fh))


def _order_free(pred, true):
    """Per-image thesis errors of heads 1 and 2 under the better assignment (by hand)."""
    a = np.abs(pred - true).sum(-1)
    b = np.abs(pred - true[:, ::-1]).sum(-1)
    swap = b.sum(1) < a.sum(1)
    return np.where(swap[:, None], b, a)


def _reduce_4mmm(v):
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    v = np.abs(v)  # mirrors x, y, z
    xy = np.sort(v[..., :2], axis=-1)[..., ::-1]  # x >= y by the diagonal mirror
    return np.concatenate([xy, v[..., 2:]], axis=-1)


def test_table_4_13_row_recomputed_from_the_checkpoint(run):
    from edorient.data import open_dataset
    from edorient.training import load_model

    data = open_dataset(run / "data")
    ids = data.index("random", "test")
    model = load_model(run / "exp1" / "exp1_random" / "stage_05" / "best.pt")
    x = torch.from_numpy(np.stack([data.image(int(i)) for i in ids]))[:, None].float()
    with torch.no_grad():
        pred = _reduce_4mmm(model(x).double().numpy())
    err = _order_free(pred, data.labels(ids).astype(np.float64))
    row = _csv(run / "exp1" / "table_4_7.csv")[1]
    assert row[0].startswith("(1)")
    mae_1, sigma_1, mae_2 = float(row[1]), float(row[2]), float(row[3])
    assert (mae_1 + mae_2) / 2 == pytest.approx(err.mean(), abs=6e-5)  # whatever the head matching
    assert mae_1 == pytest.approx(err[:, 0].mean(), abs=6e-5)
    assert sigma_1 == pytest.approx(err[:, 0].std(), abs=6e-5)  # eq. 3.3, divisor n
    assert mae_2 == pytest.approx(err[:, 1].mean(), abs=6e-5)
    m2 = _csv(run / "exp1" / "table_4_8.csv")[1]
    assert float(m2[1]) == pytest.approx(err.min(axis=1).mean(), abs=6e-5)


def test_dense_fine_tuning_keeps_the_convolutions_and_all_layers_does_not(run):
    def features(path):
        sd = torch.load(path, weights_only=True)["model"]
        return {k: v for k, v in sd.items() if k.startswith("features.") and v.dtype.is_floating_point}

    pre1 = features(run / "pre" / "pre1" / "best.pt")
    dense = features(run / "pre" / "pre2_dense_only" / "stage_05" / "best.pt")
    every = features(run / "pre" / "pre2_all_layers" / "stage_05" / "best.pt")
    assert all(torch.equal(pre1[k], dense[k]) for k in pre1)
    assert any(not torch.equal(pre1[k], every[k]) for k in pre1)
    # stage 1 of pre-experiment 2 is pre-experiment 1's model, not retrained
    assert (run / "pre" / "pre2_dense_only" / "stage_01" / "best.pt").resolve() == (run / "pre" / "pre1" / "best.pt").resolve()
    first = features(run / "exp1" / "exp1_kmeans_i" / "stage_01" / "best.pt")
    last = features(run / "exp1" / "exp1_kmeans_i" / "stage_05" / "best.pt")
    assert all(torch.equal(first[k], last[k]) for k in first)


def test_kmeans_subsets_partition_the_training_set_in_thesis_proportions(run):
    from edorient.data import open_dataset

    data = open_dataset(run / "data")
    trainval = data.index("random", "trainval")
    for scheme in ("kmeans_i", "kmeans_ii", "equal", "thesis"):
        subs = [np.concatenate([data.index("random", p, k, scheme) for p in ("train", "val")]) for k in range(5)]
        allids = np.concatenate(subs)
        assert np.array_equal(np.sort(allids), trainval), scheme  # disjoint, covering
        sizes = [s.size for s in subs]
        if scheme == "equal":
            assert max(sizes) - min(sizes) <= 1
        else:  # 100k x 4 + 89.5k of 489,500; scheme (ii) rounds in each of its 5 directories
            tol = 5 if scheme == "kmeans_ii" else 1
            for s in sizes[:4]:
                assert abs(s - trainval.size * 100_000 / 489_500) <= tol, scheme
            assert abs(sizes[4] - trainval.size * 89_500 / 489_500) <= tol, scheme


def test_experiment_3_trains_on_resized_images(run):
    for name, side in (("exp3_56", 8), ("exp3_28", 4)):  # 32 x 56/224 and 32 x 28/224
        ck = torch.load(run / "exp3" / name / "best.pt", weights_only=True)
        assert ck["model_config"]["input_size"] == side
        assert ck["extra"]["experiment"] == name


def test_pre_experiment_sets_follow_the_thesis(run):
    cfg = json.loads((run / "config.json").read_text())["plan"]
    # 253 x 50,000 / 499,500 = 25.3; sets 100k x 4 and 49.5k in proportion
    assert cfg["pre_test"] == 25
    assert sum(cfg["pre_sets"]) + cfg["pre_test"] == 253
    assert cfg["pre_sets"][4] < cfg["pre_sets"][0]
    t31 = _csv(run / "pre" / "table_3_1.csv")
    assert [r[0] for r in t31[1:]] == ["1", "2", "3", "4", "5", "mean", "thesis mean"]
    # the mean row is the mean of the five subset rows (the thesis' layout)
    vals = [float(r[1]) for r in t31[1:6]]
    assert float(t31[6][1]) == pytest.approx(np.mean(vals), abs=1e-4)
    assert t31[7][1:] == ["0.2832", "0.5250", "0.2811", "0.5130"]


def test_rerun_resumes_without_training(run, capsys):
    stamp = (run / "exp3" / "exp3_28" / "best.pt").stat().st_mtime_ns
    rc = main(["-q", "reproduce", *TINY, "--experiment", "3", "--out", str(run)])
    assert rc == 0
    assert (run / "exp3" / "exp3_28" / "best.pt").stat().st_mtime_ns == stamp
    rc = main(["-q", "reproduce", *TINY, "--seed", "1", "--out", str(run)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "seed" in err[0]


@pytest.mark.parametrize("args, words", [
    (["--scale", "0"], "(0, 1]"),
    (["--scale", "1.5"], "(0, 1]"),
    (["--experiment", "4"], "unknown experiment"),
    (["--scale", "0.0001"], "too few"),
    (["--size", "30"], "multiple of 8"),
    (["--arch", "nope"], "unknown architecture"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, words):
    rc = main(["reproduce", "--out", str(tmp_path / "o"), *args])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "o" / "data").exists()


def test_thesis_epochs_math():
    # the CPU default plans 10 epochs on the first set and 1 on each later one
    from edorient.experiments import ReproduceConfig, make_plan

    plan = make_plan(ReproduceConfig().resolved())
    assert plan.stage("pre1").epochs == 10 and plan.stage("pre2_all_layers/stage_02").epochs == 1
    assert math.comb(plan.n_orientations, 2) == plan.n_images


def test_objective_choice_sets_loss_and_checkpoint_rule():
    from edorient.errors import EdorientError
    from edorient.experiments import ReproduceConfig

    base = ReproduceConfig(scale=0.001).resolved()
    assert (base.train_settings()["loss"], base.train_settings()["select"]) == ("order-free", "mae_of")
    thesis = ReproduceConfig(scale=0.001, objective="thesis").resolved()
    assert (thesis.train_settings()["loss"], thesis.train_settings()["select"]) == ("thesis", "sum_mae")
    assert thesis.identity() != base.identity()  # a rerun into the same folder must not mix them
    with pytest.raises(EdorientError, match="unknown objective"):
        ReproduceConfig(scale=0.001, objective="mse").resolved()
