"""`uniformer data synth|check coco|ade20k|coco_pose`: the dense formats' synthetic twins pass their checkers through
the CLI, and a planted defect is named and fails the check."""
import pytest

from uniformer.cli import main


@pytest.mark.parametrize("name, split_dir", [("coco", "val2017"), ("ade20k", "images/validation"),
                                             ("coco_pose", "val2017")])
def test_synth_then_check_through_the_cli(tmp_path, capsys, name, split_dir):
    root = tmp_path / name
    assert main(["data", "synth", name, "--out", str(root)]) == 0
    assert main(["data", "check", name, "--root", str(root)]) == 0
    assert "OK" in capsys.readouterr().out
    victim = sorted((root / split_dir).iterdir())[0]
    victim.unlink()
    assert main(["data", "check", name, "--root", str(root)]) == 1
    assert victim.name in capsys.readouterr().out
