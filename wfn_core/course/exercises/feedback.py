"""How every exercise check reports: a pass, or a fail with what went wrong and a hint, never a traceback.

A check runs the student's function on inputs where the library knows the answer. Whatever goes wrong in
the student's code (a ``NotImplementedError`` left in place, a wrong value, a shape error, any exception)
becomes a :class:`Feedback` that says so, so a student notebook runs top to bottom and each check cell
shows ``✗ … Hint: …`` until the exercise is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Feedback", "Wrong", "run_check", "as_tensor", "expect_close", "expect_equal"]


class Wrong(AssertionError):
    """Raised inside a check when the student's answer is wrong; the message says how."""


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check. Truthy when it passed; shown as one or two lines in a notebook."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.exercise}: {self.message}"
        return f"✗ {self.exercise}: {self.message}\n  Hint: {self.hint}"

    __repr__ = __str__


def run_check(exercise: str, trial: Callable[[], str], hint: str) -> Feedback:
    """Run ``trial`` (which calls the student's code, raises :class:`Wrong` on a wrong answer and returns a
    one-line success message) and turn whatever happens into :class:`Feedback`."""
    try:
        message = trial()
    except NotImplementedError:
        return Feedback(exercise, False, "not implemented yet: replace `raise NotImplementedError()` with your code",
                        hint)
    except Wrong as e:
        return Feedback(exercise, False, str(e), hint)
    except Exception as e:  # the student's code failed: report it instead of a traceback
        return Feedback(exercise, False, f"your code raised {type(e).__name__}: {e}", hint)
    return Feedback(exercise, True, message)


def as_tensor(value: object, what: str) -> torch.Tensor:
    """The student's return value as a float64 tensor, or :class:`Wrong` naming what came back."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    raise Wrong(f"{what} should be a tensor or a number, got {type(value).__name__}")


def expect_close(got: object, want: torch.Tensor, what: str, inputs: torch.Tensor | None = None,
                 rtol: float = 1e-6, atol: float = 1e-9) -> None:
    """Raise :class:`Wrong` unless ``got`` matches ``want`` in shape and value, naming the first mismatch
    (and the input that produced it, when ``inputs`` is given)."""
    g, w = as_tensor(got, what), want.detach().to(torch.float64)
    if g.shape != w.shape:
        raise Wrong(f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
    bad = ~torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=False)
    if bad.any():
        i = tuple(int(j) for j in bad.nonzero()[0]) if g.dim() else ()
        where = f" at index {i}" if i else ""
        given = f" (input {inputs.reshape(g.shape)[i].item():.6g})" if inputs is not None and g.dim() else ""
        raise Wrong(f"{what}{where}{given} is {g[i].item():.6g}, expected {w[i].item():.6g} "
                    f"({int(bad.sum())} of {g.numel()} entries wrong)")


def expect_equal(got: object, want: object, what: str) -> None:
    """Raise :class:`Wrong` unless ``got == want`` (for counts, booleans and other exact answers)."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if got != want:
        raise Wrong(f"{what} is {got!r}, expected {want!r}")
