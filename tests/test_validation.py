"""The one argument-check module: every message names the parameter, the value and what is allowed."""

import math

import numpy as np
import pytest
import torch

from wfn_core import InvalidParameterError, WFNConfig
from wfn_core._validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_tensor,
    check_zero_threshold,
    fail,
)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_number("delta", 0.2, low=0, high=0.1, low_open=True, high_open=True, why="δ·T < 1"),
         "delta=0.2 is not allowed: it must be a number in (0, 0.1) (δ·T < 1)"),
        (lambda: check_number("lr", 0, low=0, low_open=True), "lr=0 is not allowed: it must be a number > 0"),
        (lambda: check_number("alpha", math.nan, low=0), "alpha=nan is not allowed: it must be a number >= 0"),
        (lambda: check_number("alpha", True, low=0), "alpha=True is not allowed: it must be a number >= 0"),
        (lambda: check_number("x", "1"), "x='1' is not allowed: it must be a finite number"),
        (lambda: check_int("k", 2.0, low=1), "k=2.0 is not allowed: it must be an integer >= 1"),
        (lambda: check_int("bits", 17, low=2, high=16), "bits=17 is not allowed: it must be an integer in [2, 16]"),
        (lambda: check_bool("include_bn", 1), "include_bn=1 is not allowed: it must be True or False"),
        (lambda: check_choice("optimizer", "adagrad", ("adam", "sgd")),
         "optimizer='adagrad' is not allowed: it must be one of 'adam', 'sgd'"),
        (lambda: check_choice("bits", True, (1, 2)), "bits=True is not allowed: it must be one of 1, 2"),
        (lambda: check_tensor("weights", [0.5]),
         "weights=[0.5] is not allowed: it must be a non-empty floating-point torch.Tensor"),
        (lambda: check_tensor("weights", torch.zeros(0)),
         "weights (a tensor with 0 elements) is not allowed: it must be a non-empty floating-point torch.Tensor"),
        (lambda: check_zero_threshold(0.01),
         "zero_threshold=0.01 is not allowed: it must be a positive power of two such as 2**-7"),
        (lambda: WFNConfig(delta=0.2), "delta=0.2 is not allowed: it must be a number in (0, 0.1) "
                                       "(δ_0 = δ·T must stay below 1 with T = 10 fixing iterations)"),
    ],
)
def test_messages_name_the_parameter_the_value_and_what_is_allowed(call, message):
    with pytest.raises(InvalidParameterError) as err:
        call()
    assert str(err.value) == message


def test_one_error_for_both_kinds_of_bad_value():
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
    with pytest.raises(TypeError, match="seed='0' is not allowed"):
        check_int("seed", "0")
    with pytest.raises(ValueError, match="seed=-1 is not allowed"):
        check_int("seed", -1, low=0)
    assert isinstance(fail("x", 1, "2"), InvalidParameterError)


def test_good_values_come_back_converted():
    assert check_number("delta", np.float32(0.5), low=0) == 0.5 and type(check_number("lr", 1, low=0)) is float
    assert check_int("seed", np.int64(3), low=0) == 3 and type(check_int("seed", np.int64(3))) is int
    assert check_zero_threshold(2**-7) == 2.0**-7 and check_bool("b", False) is False
    assert check_choice("o", "sgd", ("adam", "sgd")) == "sgd"
