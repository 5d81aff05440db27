"""Output folders are claimed with a marker; other people's folders and files are never written."""

from __future__ import annotations

import json

import pytest

from edorient._utils.outputs import (
    MARKER,
    check_output_file,
    claim_output_dir,
    marker_kind,
    output_kind,
)
from edorient._utils.resources import (
    format_bytes,
    require_disk,
    require_memory,
    template_dictionary_bytes,
)
from edorient.errors import EdorientError


def test_new_and_empty_folders_are_claimed_with_a_marker(tmp_path):
    new = claim_output_dir(tmp_path / "a" / "b", "evaluation")
    assert marker_kind(new) == "evaluation" and json.loads((new / MARKER).read_text())["kind"] == "evaluation"
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output_dir(empty, "run")
    assert output_kind(empty) == "run"
    claim_output_dir(empty, "run")  # its own kind again: fine


def test_other_kinds_and_user_folders_are_refused_untouched(tmp_path):
    ev = claim_output_dir(tmp_path / "ev", "evaluation")
    with pytest.raises(EdorientError, match="is an edorient evaluation .* not a training run"):
        claim_output_dir(ev, "run")
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text('{"mine": 1}')
    with pytest.raises(EdorientError, match=r"not an edorient demo .* \('config.json'\)") as e:
        claim_output_dir(user, "demo")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in user.iterdir()) == ["config.json"]  # no marker written
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdorientError, match="is a file"):
        claim_output_dir(tmp_path / "file", "run")
    with pytest.raises(EdorientError, match="is a file, not a folder"):
        claim_output_dir(tmp_path / "file" / "sub", "run")


@pytest.mark.parametrize("kind, files", [
    ("dataset", {"meta.json": '{"format": "edorient-dataset"}'}),
    ("dataset", {"images/shard_00000.npy": "", "labels/ratio.npy": "", ".meta.json.tmp-999": "{"}),
    ("run", {"train_args.json": '{"arch": "compact", "settings": {}}'}),
    ("run", {"stage_01/config.json": '{"train": {}, "model": {}}'}),
    ("evaluation", {"config.json": '{"evaluate": {}}', "report.md": "x"}),
    ("clusters", {"config.json": '{"command": "cluster"}'}),
    ("demo", {"config.json": '{"demo": {}}'}),
    ("reproduce", {"config.json": '{"command": "reproduce", "identity": {}}'}),
])
def test_outputs_made_before_the_marker_are_recognised(tmp_path, kind, files):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert output_kind(tmp_path) == kind
    claim_output_dir(tmp_path, kind)
    assert marker_kind(tmp_path) == kind


def test_a_user_folder_named_like_a_data_set_is_not_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "shard_01.tif").write_text("mine")
    assert output_kind(tmp_path) is None
    with pytest.raises(EdorientError, match="did not write"):
        claim_output_dir(tmp_path, "dataset")


def test_output_files(tmp_path):
    assert check_output_file(tmp_path / "new" / "x.json", "--json")  # a missing folder can be created
    assert not (tmp_path / "new").exists()  # ... but the check creates nothing
    with pytest.raises(EdorientError, match="is a folder; give a file name"):
        check_output_file(tmp_path, "--png")
    with pytest.raises(EdorientError, match="does not exist"):
        check_output_file(tmp_path / "no" / "x.log", "--logfile", create_parent=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(EdorientError, match="is a file, not a folder"):
        check_output_file(tmp_path / "f" / "x.csv", "--csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no probe left


def test_resources_refuse_with_the_figure(tmp_path):
    assert format_bytes(3.2e9) == "3.2 GB" and format_bytes(5.12e14) == "512 TB"
    with pytest.raises(EdorientError, match="needs about 1.0 EB of memory"):
        require_memory(1e18, "it", "use less")
    with pytest.raises(EdorientError, match=f"needs about 1.0 EB of disk, but {tmp_path} has"):
        require_disk(1e18, tmp_path / "x" / "y", "it", "use less")
    require_memory(1e3, "it", "")
    assert 100e6 < template_dictionary_bytes(400) < 1e9  # the default dictionary: a few hundred MB
