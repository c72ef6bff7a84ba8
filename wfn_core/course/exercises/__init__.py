"""Exercises with checks: a student implements one piece of WFN, and a ``check_*`` function compares it
with the library on inputs where the answer is known, printing ✓ or ✗ with a hint (never a traceback).

One module per notebook topic: :mod:`.apot` (01), :mod:`.clustering` (02), :mod:`.regulariser` (03),
:mod:`.metrics` (04). ``python -m wfn_core student --out DIR`` writes the notebooks with every solution
replaced by ``raise NotImplementedError()``.
"""

from .feedback import Feedback, Wrong, run_check

__all__ = ["Feedback", "Wrong", "run_check"]
