"""Argument checks shared by every public function: one exception, one message style.

Every message names the parameter, the value given, and what is allowed::

    delta=0.2 is not allowed: it must be a number in (0, 0.1) (δ_0 = δ·T must stay below 1; T = 10)

:class:`InvalidParameterError` subclasses both ``ValueError`` and ``TypeError`` (as scikit-learn's does),
so callers catching either keep working whether the value had the wrong type or the wrong size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "InvalidParameterError", "fail", "check_number", "check_int", "check_bool", "check_choice", "check_tensor",
    "check_finite", "check_zero_threshold",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter with a value that is not allowed; the message says which values are."""


def fail(name: str, value: Any, allowed: str) -> InvalidParameterError:
    """The error for ``name=value``; ``allowed`` completes "it must be ...". Raise what it returns."""
    shown = f"a {type(value).__name__}" if isinstance(value, torch.Tensor) else repr(value)
    return InvalidParameterError(f"{name}={shown} is not allowed: it must be {allowed}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def _inside(x: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    return not (high is not None and (x >= high if high_open else x > high))


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False,
    high_open: bool = False, why: str = "",
) -> float:
    """``value`` as a float: a finite real number (not a bool) in the given interval.

    ``why`` is added to the message in brackets (the reason behind a bound that is not obvious)."""
    interval = _interval(low, high, low_open, high_open)
    allowed = f"a number {interval}" if interval else "a finite number"
    allowed += f" ({why})" if why else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, value, allowed)
    x = float(value)
    if not math.isfinite(x) or not _inside(x, low, high, low_open, high_open):
        raise fail(name, value, allowed)
    return x


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (Python or NumPy integer, not a bool) in ``[low, high]``."""
    allowed = " ".join(filter(None, ("an integer", _interval(low, high, False, False))))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(name, value, allowed)
    if not _inside(int(value), low, high, False, False):
        raise fail(name, value, allowed)
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value``, which must be ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise fail(name, value, "True or False")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value``, which must be one of ``allowed``."""
    options = tuple(allowed)
    if not any(isinstance(value, bool) == isinstance(option, bool) and value == option for option in options):
        raise fail(name, value, "one of " + ", ".join(map(repr, options)))
    return value


def check_tensor(name: str, value: Any, *, floating: bool = True, non_empty: bool = True) -> torch.Tensor:
    """``value``, a ``torch.Tensor`` (floating point and non-empty unless told otherwise)."""
    kind = " ".join(filter(None, ("a non-empty" if non_empty else "a", "floating-point" if floating else "",
                                  "torch.Tensor")))
    if not isinstance(value, torch.Tensor):
        raise fail(name, value, kind)
    if floating and not value.is_floating_point():
        raise InvalidParameterError(f"{name} (a tensor of dtype {value.dtype}) is not allowed: it must be {kind}")
    if non_empty and value.numel() == 0:
        raise InvalidParameterError(f"{name} (a tensor with 0 elements) is not allowed: it must be {kind}")
    return value


def check_finite(name: str, values: torch.Tensor) -> torch.Tensor:
    """``values``, which must hold no NaN or inf; the message names the first bad entry and its index."""
    bad = ~torch.isfinite(values.detach())
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        index = where[0] if len(where) == 1 else where
        raise InvalidParameterError(
            f"{name} holds {values.detach()[where].item()} at index {index}: it must hold finite values only "
            f"(no NaN or inf)"
        )
    return values


def check_zero_threshold(value: Any, name: str = "zero_threshold") -> float:
    """γ0 as a float: a positive power of two such as ``2**-7`` (the ladder of candidates starts there)."""
    allowed = "a positive power of two such as 2**-7"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, value, allowed)
    x = float(value)
    if not (math.isfinite(x) and x > 0 and math.frexp(x)[0] == 0.5):
        raise fail(name, value, allowed)
    return x
