"""edorient.experiments.tables: stage progress and the thesis' conclusions from numbers."""

from __future__ import annotations

import json

import numpy as np

from edorient.experiments.tables import _stop_note, conclusions, stage_progress


def _stage(root, name, *, epochs, steps_done, time_limit_s=0.0, train_size=100, batch_size=10):
    run = root / name
    run.mkdir(parents=True)
    cfg = {"train": {"epochs": epochs, "batch_size": batch_size, "time_limit_s": time_limit_s},
           "train_size": train_size}
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "metrics.csv").write_text("epoch,step\n" + "".join(f"{i + 1},{s}\n" for i, s in enumerate(steps_done)))


def test_stage_progress_reports_unfinished_stages_with_or_without_a_time_limit(tmp_path):
    # 3 epochs x 10 steps = 30 planned; finished within one step per epoch counts as 30
    _stage(tmp_path, "a_done", epochs=3, steps_done=[10, 20, 28])
    _stage(tmp_path, "b_interrupted", epochs=3, steps_done=[10])  # no time limit, killed after epoch 1
    _stage(tmp_path, "c_cut", epochs=3, steps_done=[10, 15], time_limit_s=60.0)
    _stage(tmp_path, "d_not_started", epochs=3, steps_done=[])
    assert stage_progress(tmp_path) == [("a_done", 30, 30), ("b_interrupted", 10, 30), ("c_cut", 15, 30),
                                        ("d_not_started", 0, 30)]
    cut, unfinished = _stop_note(tmp_path)
    assert cut == ["c_cut 50 %"]
    assert unfinished == ["b_interrupted 33 %", "d_not_started 0 %"]


def _results(rng):
    base = rng.random(50)
    res = {}
    for key, shift in (("pre1", 0.5), ("pre2_all_layers", 0.2), ("pre2_dense_only", 0.1)):
        per = {"method1_free": (base + shift).tolist(), "method2_oracle_free": (base + shift).tolist()}
        res[key] = {"per_sample": per}
    return res


def _speed(checks):
    (row,) = [c for c in checks if c[0].startswith("(ii) trains faster")]
    return row


def test_training_speed_verdict_from_numbers():
    results = _results(np.random.default_rng(0))
    claim, evidence, verdict = _speed(conclusions(results, {"pre2_all_layers": (261.04, 300.0),
                                                            "pre2_dense_only": (1280.5, 130.0)}))
    assert verdict == "does not hold"  # 1280.5 s is slower, however the cells are formatted
    assert evidence == "1280.5 / 130.0 s vs 261.0 / 300.0 s per epoch (stages 2-4 / 5)"
    _, _, verdict = _speed(conclusions(results, {"pre2_all_layers": (261.0, 300.0),
                                                 "pre2_dense_only": (128.0, 130.0)}))
    assert verdict == "holds"
    _, evidence, verdict = _speed(conclusions(results, {"pre2_all_layers": None, "pre2_dense_only": (1.0, 1.0)}))
    assert verdict == "does not hold" and "1.0 / 1.0 s vs – s" in evidence
    assert not [c for c in conclusions(results) if c[0].startswith("(ii) trains faster")]
