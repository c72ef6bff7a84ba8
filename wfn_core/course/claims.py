"""Claims: what the course asserts, worded one way everywhere, and true on any machine.

CPU float results depend on the vector kernels a CPU has and on the thread count, so the same seed
trains a slightly different network on every machine. A notebook therefore never checks a count or an
accuracy to the last digit; it checks a **claim**: a statement with a bound chosen from the spread measured
over machines (``python benchmarks/reproducibility.py``), whether it holds, and the value measured here::

    >>> check(at_most("unique values", 25, 40))
    unique values at most 40: yes  [measured 25]

nbval's sanitizer (``tests/nbval_sanitize.cfg``) masks ``[measured …]``, so a checked cell compares the
statements and their yes/no only, while a student still sees their own numbers. :func:`check` raises
:class:`ClaimFailed` when a claim does not hold, so the same call is the notebook's assertion.

The claim *sets* of the notebooks live in :mod:`wfn_core.course.checks`, where the reproducibility
script evaluates exactly what the notebooks evaluate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .._validation import fail

__all__ = ["Claim", "ClaimFailed", "claim", "at_most", "at_least", "check", "MEASURED", "CLAIM_LINE"]

#: The marker the nbval sanitizer masks; the measured value goes inside it.
MEASURED = re.compile(r"\[measured [^\]]*\]")
#: How every printed claim line looks (after the marker is masked, nothing machine-dependent is left).
CLAIM_LINE = re.compile(r"^\S.*: (yes|NO)(  \[measured [^\]]*\])?$")


@dataclass(frozen=True)
class Claim:
    """A statement with its bound, whether it holds, and what was measured (shown, never compared)."""

    statement: str
    holds: bool
    measured: str = ""

    def __str__(self) -> str:
        line = f"{self.statement}: {'yes' if self.holds else 'NO'}"
        return f"{line}  [measured {self.measured}]" if self.measured else line


class ClaimFailed(AssertionError):
    """One or more claims did not hold; the message lists them with their measured values."""


def _fmt(value: object, fmt: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, fmt) for v in value)
    # a "]" would end the sanitizer's [measured …] marker early
    return str(value).replace("[", "(").replace("]", ")")


def claim(statement: str, holds: bool, measured: object = None, fmt: str = "g") -> Claim:
    """A claim from a statement and a truth value; a numeric ``measured`` is formatted with ``fmt``,
    anything else with ``str``."""
    if not isinstance(statement, str) or not statement.strip() or "\n" in statement or ":" in statement:
        raise fail("statement", statement, "one non-empty line without ':'")
    return Claim(statement.strip(), bool(holds), "" if measured is None else _fmt(measured, fmt))


def at_most(what: str, value: float | int, bound: float | int, fmt: str = "g", unit: str = "") -> Claim:
    """``"{what} at most {bound}{unit}"``, holding when ``value <= bound``."""
    return claim(f"{what} at most {bound:g}{unit}", value <= bound, _fmt(value, fmt) + unit)


def at_least(what: str, value: float | int, bound: float | int, fmt: str = "g", unit: str = "") -> Claim:
    """``"{what} at least {bound}{unit}"``, holding when ``value >= bound``."""
    return claim(f"{what} at least {bound:g}{unit}", value >= bound, _fmt(value, fmt) + unit)


def check(*claims: Claim | Iterable[Claim], quiet: bool = False) -> None:
    """Print one line per claim (unless ``quiet``) and raise :class:`ClaimFailed` if any does not hold.

    Accepts claims and iterables of claims (a notebook's claim set). Returns nothing, so a notebook cell
    ending in ``check(...)`` shows the printed lines only, never a repr with the measured values."""
    flat: list[Claim] = []
    for item in claims:
        flat.extend([item] if isinstance(item, Claim) else item)
    for c in flat:
        if not isinstance(c, Claim):
            raise fail("claims", c, "Claim objects or iterables of them (build them with claim, at_most or at_least)")
    if not quiet:
        for c in flat:
            print(c)
    failed = [c for c in flat if not c.holds]
    if failed:
        raise ClaimFailed("claims that do not hold on this machine:\n" + "\n".join(f"  {c}" for c in failed))
