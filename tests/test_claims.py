import pytest

from wfn_core.course import checks as CC
from wfn_core.course.claims import CLAIM_LINE, MEASURED, ClaimFailed, at_least, at_most, check, claim


def test_a_claim_prints_its_statement_verdict_and_masked_measurement(capsys):
    assert check(at_most("unique values", 25, 36), at_least("share", 99.5, 99, unit="%"),
                 claim("bit-exact", True)) is None
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["unique values at most 36: yes  [measured 25]", "share at least 99%: yes  [measured 99.5%]",
                       "bit-exact: yes"]
    assert all(CLAIM_LINE.match(line) for line in printed)
    assert [MEASURED.sub("", line).strip() for line in printed[:2]] == ["unique values at most 36: yes",
                                                                       "share at least 99%: yes"]


def test_a_failing_claim_raises_and_names_itself(capsys):
    with pytest.raises(ClaimFailed, match=r"unique values at most 36: NO  \[measured 48\]"):
        check([at_most("unique values", 48, 36), claim("fine", True)])
    assert "unique values at most 36: NO" in capsys.readouterr().out
    assert isinstance(ClaimFailed("x"), AssertionError)  # notebooks' checks are assertions


def test_measured_lists_and_brackets_stay_inside_the_marker():
    line = str(claim("sizes shrink", True, [93, 83, 73.5]))
    assert line == "sizes shrink: yes  [measured 93, 83, 73.5]"
    assert str(claim("x", True, "a [b]")) == "x: yes  [measured a (b)]"
    assert MEASURED.sub("[measured]", line) == "sizes shrink: yes  [measured]"


def test_bounds_are_inclusive():
    assert at_most("x", 36, 36).holds and not at_most("x", 36.01, 36).holds
    assert at_least("x", 1.5, 1.5).holds and not at_least("x", 1.49, 1.5).holds


@pytest.mark.parametrize("statement", ["", "   ", "two\nlines", "a: b", 3])
def test_bad_statements_are_refused(statement):
    with pytest.raises(ValueError, match="statement="):
        claim(statement, True)


def test_check_refuses_what_is_not_a_claim():
    with pytest.raises(TypeError, match="Claim"):
        check(["unique values at most 36: yes"])


def _run(top1=0.9861, unique=25, entropy=2.4, fixed=1.0):
    return {"top1": top1, "unique": unique, "entropy_bits": entropy, "fixed_fraction": fixed}


def test_the_run_claims_catch_the_regressions_they_name():
    baseline = {"top1": 0.9889}
    assert all(c.holds for c in CC.wfn_run_claims(baseline, _run()))
    # One image more than the bound allows, too many values, too much entropy, a weight left free.
    worst_allowed = 0.9889 - CC.MAX_DROP_POINTS / 100
    failing = {
        "top-1": _run(top1=worst_allowed - CC.TEST_IMAGE_POINTS / 100),
        "unique": _run(unique=CC.MAX_UNIQUE + 1),
        "entropy": _run(entropy=CC.MAX_ENTROPY_BITS + 0.01),
        "fixes every": _run(fixed=0.999),
    }
    for word, final in failing.items():
        broken = [c.statement for c in CC.wfn_run_claims(baseline, final) if not c.holds]
        assert len(broken) == 1 and word in broken[0], (word, broken)


def test_the_bounds_cover_at_least_one_image_and_stay_below_the_cliff():
    assert CC.MAX_DROP_POINTS >= 2 * CC.TEST_IMAGE_POINTS  # one image is never a failure
    assert CC.MAX_DROP_POINTS < 2.0 and CC.MAX_UNIQUE <= 40  # "no loss" and "a few dozen" still mean something
