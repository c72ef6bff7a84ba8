import pytest

from wfn_core.cli import main
from wfn_core.models import PRETRAINED_DIGITS_SHA256, sha256_file


@pytest.mark.slow
def test_train_baseline_reproduces_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "digits_cnn.pt"
    assert main(["train-baseline", "--dataset", "digits", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test top-1 99.72%" in printed
    assert sha256_file(out) == PRETRAINED_DIGITS_SHA256
    assert oct(out.stat().st_mode & 0o777) != "0o600"


def test_evaluate_prints_accuracy(capsys):
    assert main(["evaluate", "--dataset", "digits"]) == 0
    assert "digits test top-1: 99.72%" in capsys.readouterr().out


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train-baseline", "--dataset", "imagenet", "--out", "x.pt"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-baseline", "--epochs", "0", "--out", "x.pt"])
    assert "not a positive integer" in capsys.readouterr().err
