"""``edorient model``: counts and the eq. 3.4/3.5 lines; bad arguments exit 2 with one line."""

import pytest

from edorient.cli.main import main

pytestmark = pytest.mark.cli


def test_thesis_model_prints_counts_memory_and_batches(capsys):
    assert main(["model", "--arch", "thesis", "--gpu-memory", "11"]) == 0
    out = capsys.readouterr().out
    assert "6,273,542" in out and "102,958,822" in out
    assert "7.25 GB at batch 128" in out
    assert "eq. 3.5 batch sizes     16 32 64 128 " in out
    assert "Conv2d" in out and "MaxPool2d" in out and "Dropout" in out


def test_variants_and_input_size(capsys):
    assert main(["model", "--arch", "thesis-dense1024"]) == 0
    assert "206,244,582" in capsys.readouterr().out
    assert main(["model", "--arch", "thesis", "--input", "56"]) == 0
    assert "64x14x14" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["model", "--arch", "nope"], ["model", "--batch-size", "0"], ["model", "--input", "2"]])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error" in err[-1]
    if argv[1] == "--arch":
        assert err == ["edorient model: error: unknown architecture 'nope'; choose one of: "
                       "compact, compact-gap, compact-s, thesis, thesis-6conv, thesis-dense1024, thesis-single"]
