"""The fast engine behind :func:`wfn_core.clustering.cluster` (private; read ``cluster_reference`` first).

:func:`wfn_core.clustering.cluster_reference` is the readable version of the same clustering call (section 3
of the algorithm doc), written with K×N matrices and full sorts; this module computes the identical result
(bit for bit: the tests check it on random and trained weights over whole schedules) without them, as the
document's "Making it fast" asks:

- **one sort per call**: the weights' bit patterns, as signed integers, are radix-sorted once
  (stable), which splits them into negatives and positives, each by |w| ascending with ties in
  flat-index order (exactly the step-4 tie-break), plus the exact zeros. No float copy is kept:
  magnitudes are searched on, and read off, the sorted bit patterns. The unassigned weights of each
  array are kept as sorted runs of positions.
- **the vote is a histogram**: the nearest-candidate cells are intervals, so a pass counts them
  with ``searchsorted`` on the cell boundaries and prefix counts over the runs.
- **the cost order is a walk**: on the centre's side of zero, ``|w − c|/|w|`` grows moving away
  from ``c`` in the sorted array, and on the other side it falls with |w|; the cost-sorted order
  is a merge of these monotone sequences, read in windows that widen in shells as needed.
- **the running mean** is found with prefix sums over those sequences, narrowed to a small
  bracket that alone is ordered exactly (cost, then |w|, then flat index). This sums in another
  order than the sequential rule, so its decision is accepted only when a rigorous error bound
  proves it equal to the sequential one; otherwise the exact sequential computation decides.

A pass costs O(K log N + window) and a call O(N log N) for its sort; there are no K×N matrices and
no Python loop over weights. The per-pass bookkeeping (runs, searches, small windows) uses NumPy
views of the torch tensors, whose per-call overhead is lower for the many small questions a pass
asks; large windows are costed with torch. The float semantics are those of the
:mod:`wfn_core.clustering` docstring.
"""

from __future__ import annotations

import bisect
import itertools
import math
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .centres import _candidates_cached, _ladder

_U = 2.0**-53  # unit roundoff of float64
_EXACT_LIMIT = 4096  # windows this small are ordered exactly (sorted) straight away
_BRACKET_LIMIT = 1024  # the fast path narrows the crossing down to this many elements
_SAMPLES = 128  # thresholds sampled per chunk and round in the fast path
_MIN_WINDOW = 64  # a first window smaller than this is widened before it is read


# =============================================================================== the call
def cluster_fast(
    flat: torch.Tensor, quota: int, delta: float, zero_threshold: float, locked: torch.Tensor | None,
    relax_after: int,
) -> tuple[torch.Tensor, torch.Tensor, list[float], tuple[int, ...]]:
    """Section 3 on validated input: fix ``quota`` of the flat CPU ``weights`` (``locked`` ones already fixed).

    ``relax_after`` is the order past which an empty pass doubles ``a``. Returns the new values (dtype of
    ``flat``), the fixed mask, the picked centres (sorted, unique) and the count taken at each order.
    """
    call = _Call(flat, locked, zero_threshold)
    assigned = int(torch.count_nonzero(locked)) if locked is not None else 0
    narrow_dtype = flat.dtype != torch.float64
    log2_zero_threshold = math.frexp(zero_threshold)[1] - 1
    k, a = 0, delta
    picked: set[float] = set()
    taken_by_order: list[int] = []
    while assigned < quota:
        if k == len(taken_by_order):
            taken_by_order.append(0)
        bound = call.max_abs()
        cands = _candidates(delta, k, bound, zero_threshold, flat.dtype)
        centre = cands.as_list[call.vote(cands)]
        needed = quota - assigned
        if centre == 0:
            took = call.take_zero(needed, a)
        else:
            # m − c is exact in float64 (so the right-hand costs are monotone) when the weights have
            # at most 24 significant bits and every bit of m and c lies within 53 places.
            right_exact = narrow_dtype and max(bound, abs(centre)) < 2.0 ** (51 + log2_zero_threshold - k - 1)
            took = call.take_nonzero(centre, needed, a, right_exact)
        picked.add(centre)
        taken_by_order[k] += took
        assigned += took
        if took == 0:
            k += 1
            if k > relax_after:
                a *= 2
        else:
            a = delta
    return call.out.to(flat.dtype), call.fixed, sorted(picked), tuple(taken_by_order)


# =============================================================================== candidates
@dataclass(frozen=True)
class _Candidates:
    """C_k rounded to the weights' dtype, with the vote's cell boundaries ready to search."""

    values: torch.Tensor  # float64, ascending, representable in the weights' dtype
    bounds: torch.Tensor  # float64, bounds[j]: largest double voting for values[j] over values[j+1]
    as_list: list[float]
    neg_query: np.ndarray  # |bounds| of the negative bounds, rounded up to the weights' float type
    pos_query: np.ndarray  # the positive bounds, rounded down to the weights' float type


def _candidates(delta: float, order: int, bound: float, zero_threshold: float, dtype: torch.dtype) -> _Candidates:
    """C_k for the boundary ``B = bound``. ``B`` matters only through the rungs below it, so it is
    raised to the next rung before the cached build: passes whose ``B`` falls between the same two
    rungs share one set."""
    ladder = _ladder(min(delta, 0.9999), zero_threshold)
    return _candidates_below_rung(delta, order, ladder.rungs[ladder.count_below(bound)], zero_threshold, dtype)


@lru_cache(maxsize=4096)
def _candidates_below_rung(
    delta: float, order: int, bound: float, zero_threshold: float, dtype: torch.dtype
) -> _Candidates:
    """Cached per (δ_t, k, B, γ0, dtype), with ``B`` a rung of the ladder."""
    c = _candidates_cached(delta, order, bound, zero_threshold).to(dtype).to(torch.float64)
    c = torch.unique(c[torch.isfinite(c)])
    lo, hi = c[:-1], c[1:]
    mid = lo + (hi - lo) / 2
    # The nearest-candidate rule uses fl(|w - c|); find the exact last double that is at least as near
    # to lo as to hi (the predicate is monotone on [lo, hi] and flips within an ulp or two of mid).
    steps = [mid]
    up, down = mid, mid
    for _ in range(4):
        up, down = torch.nextafter(up, hi), torch.nextafter(down, lo)
        steps += [up, down]
    trial = torch.stack(steps)  # (9, K-1)
    nearer_lo = (trial - lo).abs() <= (trial - hi).abs()
    bounds = torch.where(nearer_lo, trial, torch.full_like(trial, -math.inf)).amax(0)
    bounds = torch.where(torch.isfinite(bounds), bounds, down)
    neg, pos = -bounds[bounds < 0], bounds[bounds > 0]
    if dtype != torch.float64:  # magnitudes are float32: round the keys so that counts stay exact
        neg, pos = _float32_bounds(neg)[1], _float32_bounds(pos)[0]
    return _Candidates(c, bounds, c.tolist(), neg.numpy(), pos.numpy())


# =============================================================================== alive runs
class _Runs:
    """The alive (unassigned) positions of one sorted array, as disjoint sorted runs ``[s, e)``.

    A pass asks a handful of scalar questions and makes a few edits, so the runs live in Python
    lists (bisect) with NumPy copies built on demand for vectorised counting.
    """

    def __init__(self, n: int, alive: torch.Tensor | None = None) -> None:
        if alive is None:
            s, e = ([0], [n]) if n else ([], [])
        else:
            edges = torch.diff(alive.to(torch.int8), prepend=torch.zeros(1, dtype=torch.int8),
                               append=torch.zeros(1, dtype=torch.int8))
            s, e = (edges == 1).nonzero().squeeze(1).tolist(), (edges == -1).nonzero().squeeze(1).tolist()
        self._set(s, e)

    def _set(self, s: list[int], e: list[int]) -> None:
        self.ls, self.le = s, e
        self.lcum = list(itertools.accumulate((b - a for a, b in zip(s, e)), initial=0))
        self.total = self.lcum[-1]
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def before(self, p: np.ndarray) -> np.ndarray:
        """Number of alive positions ``< p`` (vectorised over a NumPy array)."""
        if self.total == 0:
            return np.zeros_like(p)
        if self._arrays is None:
            self._arrays = (np.array(self.ls), np.array(self.le), np.array(self.lcum))
        s, e, cum = self._arrays
        j = np.searchsorted(s, p, side="right") - 1
        jc = np.maximum(j, 0)
        return np.where(j >= 0, cum[jc] + np.minimum(p, e[jc]) - s[jc], 0)

    def _before1(self, p: int) -> int:
        j = bisect.bisect_right(self.ls, p) - 1
        return 0 if j < 0 else self.lcum[j] + min(p, self.le[j]) - self.ls[j]

    def count(self, lo: int, hi: int) -> int:
        """Number of alive positions in ``[lo, hi)``."""
        if hi <= lo or self.total == 0:
            return 0
        return self._before1(hi) - self._before1(lo)

    def slices(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The alive positions in ``[lo, hi)`` as ascending ``(start, stop)`` pairs."""
        if hi <= lo or self.total == 0:
            return []
        j0, j1 = bisect.bisect_right(self.le, lo), bisect.bisect_left(self.ls, hi)
        return [(max(self.ls[j], lo), min(self.le[j], hi)) for j in range(j0, j1)]

    def positions(self, lo: int, hi: int) -> torch.Tensor:
        """Alive positions in ``[lo, hi)``, ascending."""
        return _positions_of(self.slices(lo, hi))

    def last_before(self, p: int) -> int:
        """Largest alive position ``< p``, or -1."""
        j = bisect.bisect_left(self.ls, p) - 1
        return min(self.le[j], p) - 1 if j >= 0 else -1

    def first_from(self, p: int) -> int:
        """Smallest alive position ``>= p``, or -1."""
        j = bisect.bisect_right(self.le, p)
        return max(self.ls[j], p) if j < len(self.ls) else -1

    def last(self) -> int:
        """Largest alive position, or -1."""
        return self.le[-1] - 1 if self.total else -1

    def subtract_range(self, lo: int, hi: int) -> None:
        """Mark every position in ``[lo, hi)`` dead."""
        if hi <= lo or self.total == 0:
            return
        j0, j1 = bisect.bisect_right(self.le, lo), bisect.bisect_left(self.ls, hi)
        if j1 <= j0:
            return
        keep_s, keep_e = [], []
        if self.ls[j0] < lo:
            keep_s.append(self.ls[j0]), keep_e.append(lo)
        if self.le[j1 - 1] > hi:
            keep_s.append(hi), keep_e.append(self.le[j1 - 1])
        self._set(self.ls[:j0] + keep_s + self.ls[j1:], self.le[:j0] + keep_e + self.le[j1:])

    def remove(self, parts: list[torch.Tensor]) -> None:
        """Mark positions dead; ``parts`` are ascending, disjoint tensors of alive positions."""
        ts, te = [], []
        for pos in parts:
            if pos.numel() == 0:
                continue
            breaks = (torch.diff(pos) != 1).nonzero().squeeze(1)
            ts.append(torch.cat([pos[:1], pos[breaks + 1]]))
            te.append(torch.cat([pos[breaks], pos[-1:]]) + 1)
        if not ts:
            return
        if sum(t.numel() for t in ts) <= 8:
            for a, b in zip(torch.cat(ts).tolist(), torch.cat(te).tolist()):
                self.subtract_range(a, b)
            return
        # Pieces of the new runs alternate: run start or taken end, then taken start or run end.
        starts = torch.sort(torch.cat([torch.tensor(self.ls, dtype=torch.int64), *te])).values
        ends = torch.sort(torch.cat([*ts, torch.tensor(self.le, dtype=torch.int64)])).values
        keep = starts < ends
        self._set(starts[keep].tolist(), ends[keep].tolist())


def _positions_of(slices: list[tuple[int, int]]) -> torch.Tensor:
    """Concatenated ``arange`` of the given ``(start, stop)`` pairs."""
    if not slices:
        return torch.empty(0, dtype=torch.int64)
    if len(slices) == 1:
        return torch.arange(slices[0][0], slices[0][1], dtype=torch.int64)
    starts = torch.tensor([a for a, _ in slices], dtype=torch.int64)
    lengths = torch.tensor([b - a for a, b in slices], dtype=torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    return torch.arange(int(lengths.sum()), dtype=torch.int64) + torch.repeat_interleave(starts - offsets, lengths)


_F32_MAX = float(torch.finfo(torch.float32).max)


def _f32_query(q: float, up: bool) -> np.floating:
    """The float32 nearest to ``q`` in the safe direction (smallest >= q if ``up``, else largest <= q)."""
    if q > _F32_MAX:
        return np.float32(np.inf) if up else np.float32(_F32_MAX)
    f = np.float32(q)
    if up and f < q:
        return np.nextafter(f, np.float32(np.inf))
    if not up and f > q:
        return np.nextafter(f, np.float32(-np.inf))
    return f


def _float32_bounds(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest float32 <= q and smallest float32 >= q, for float64 q."""
    near = q.to(torch.float32)
    back = near.to(torch.float64)
    down = torch.where(back > q, torch.nextafter(near, torch.full_like(near, -math.inf)), near)
    up = torch.where(back < q, torch.nextafter(near, torch.full_like(near, math.inf)), near)
    return down, up


class _Side:
    """Weights of one sign in sorted order (|w| ascending, ties by flat index), and their alive runs.

    ``keys`` are the weights' sorted bit patterns as signed integers: ascending in |w| within a side,
    so magnitudes are searched on them directly (a float64 query is first rounded, in the safe
    direction, to the weights' float type) and read off them per window, with no extra array.
    """

    def __init__(self, keys: torch.Tensor, sign: int, idx: torch.Tensor, alive: torch.Tensor | None) -> None:
        self.keys, self.sign, self.idx, self.n = keys, sign, idx, keys.numel()
        self.keys_np, self.idx_np = keys.numpy(), idx.numpy()
        self.wide = keys.dtype == torch.int64  # float64 weights
        self.mask = 0x7FFFFFFFFFFFFFFF if self.wide else 0x7FFFFFFF
        self.sign_bit = (-(2**63) if self.wide else -(2**31)) if sign < 0 else 0
        self.float_np = np.float64 if self.wide else np.float32
        self.runs = _Runs(self.n, alive)

    def key_of(self, magnitude: float, up: bool) -> np.integer:
        """Search key of one magnitude: its bit pattern in the weights' float type (rounded up or down).

        Returned as the keys' own NumPy integer type: a Python int would make ``np.searchsorted``
        convert the whole array first.
        """
        if self.wide:
            bits = struct.unpack("<q", struct.pack("<d", magnitude))[0]
        else:
            bits = int(np.asarray(_f32_query(magnitude, up)).view(np.int32))
        return self.keys_np.dtype.type(bits + self.sign_bit)

    def keys_of(self, magnitudes: np.ndarray) -> np.ndarray:
        """Search keys of magnitudes already in the weights' float type."""
        bits = np.asarray(magnitudes, dtype=self.float_np).view(self.keys_np.dtype)
        return bits | self.keys_np.dtype.type(self.sign_bit)

    def search(self, value: float, right: bool = False) -> int:
        """Number of magnitudes ``< value`` (or ``<= value`` with ``right``), exactly."""
        return int(np.searchsorted(self.keys_np, self.key_of(value, up=not right), side="right" if right else "left"))

    def mags_np(self, a: int, b: int) -> np.ndarray:
        """Magnitudes (float64) of positions ``a..b-1``."""
        return (self.keys_np[a:b] & self.mask).view(self.float_np).astype(np.float64)

    def mags_np_at(self, pos: np.ndarray) -> np.ndarray:
        """Magnitudes (float64) at the given positions."""
        return (self.keys_np[pos] & self.mask).view(self.float_np).astype(np.float64)

    def mags64(self, where: torch.Tensor | slice) -> torch.Tensor:
        """Magnitudes (float64) at the given positions (a tensor or a slice)."""
        keys = self.keys[where] & self.mask
        return keys.view(torch.float64) if self.wide else keys.view(torch.float32).to(torch.float64)

    def mag_at(self, position: int) -> float:
        return float((self.keys_np[position] & self.mask).view(self.float_np))


@dataclass
class _Take:
    """Taken positions of one side: every alive position in each range, plus explicit positions."""

    ranges: list[tuple[int, int]]
    explicit: list[torch.Tensor]


# =============================================================================== the state of one call
class _Call:
    """The weights of one call sorted once, the alive runs, and the output being written."""

    def __init__(self, flat: torch.Tensor, locked: torch.Tensor | None, zero_threshold: float) -> None:
        self.zero_threshold, self.n = zero_threshold, flat.numel()
        if flat.dtype == torch.float64:
            as_float, as_int, sign_bit = torch.float64, torch.int64, -(2**63)
        else:  # float16/bfloat16 convert exactly to float32; int32 keys get a fast radix sort
            as_float, as_int, sign_bit = torch.float32, torch.int32, -(2**31)
        keys = flat.to(as_float).contiguous().view(as_int)  # no copy for float32/float64 input
        # Sorting the raw bit patterns as signed integers gives: negatives by |w| ascending, then
        # zeros, then positives by |w| ascending; the stable sort keeps flat-index order among equals.
        skeys, perm = torch.sort(keys, stable=True)
        if int(skeys[0]) == sign_bit:  # -0.0 sorts first: sort again with it turned into +0.0
            del skeys, perm
            skeys, perm = torch.sort((flat.to(as_float) + 0.0).view(as_int), stable=True)
        del keys
        zero = torch.zeros(1, dtype=skeys.dtype)
        n_neg = int(torch.searchsorted(skeys, zero))
        n_nonpos = int(torch.searchsorted(skeys, zero, right=True))
        alive = None if locked is None else ~locked[perm]

        def part(a: int, b: int, sign: int) -> _Side:
            return _Side(skeys[a:b], sign, perm[a:b], None if alive is None else alive[a:b])

        self.neg, self.zeros, self.pos = part(0, n_neg, -1), part(n_neg, n_nonpos, 0), part(n_nonpos, self.n, 1)
        # The output, in the sort's float type (exact; cast back at the end). Unfixed weights keep
        # their exact bits, -0.0 included. Written through NumPy views (see take()).
        self.out = flat.to(as_float, copy=True)
        self.fixed = torch.zeros(self.n, dtype=torch.bool) if locked is None else locked.clone()
        self.out_np, self.fixed_np = self.out.numpy(), self.fixed.numpy()

    def take(self, side: _Side, take: _Take, value: float) -> int:
        """Write ``value`` into the taken weights, mark them fixed and no longer alive; return how many.

        Per-pass work goes through single-threaded NumPy: it costs less per call than torch and does
        not stall on a thread barrier when another process holds a core.
        """
        count = 0
        for lo, hi in take.ranges:
            for a, b in side.runs.slices(lo, hi):
                self._write(side.idx_np[a:b], value)
                count += b - a
            side.runs.subtract_range(lo, hi)
        parts = [p for p in take.explicit if p.numel()]
        if parts:
            pos = parts[0] if len(parts) == 1 else torch.cat(parts)
            self._write(side.idx_np[pos.numpy()], value)
            count += pos.numel()
            side.runs.remove(parts)
        return count

    def _write(self, idx: np.ndarray, value: float) -> None:
        self.out_np[idx] = value
        self.fixed_np[idx] = True

    def max_abs(self) -> float:
        best = 0.0
        for side in (self.neg, self.pos):
            last = side.runs.last()
            if last >= 0:
                best = max(best, side.mag_at(last))
        return best

    # ------------------------------------------------------------------ step 2: the vote
    def vote(self, cands: _Candidates) -> int:
        """Index of the candidate with the most votes (ties to the smaller candidate)."""
        if len(cands.as_list) == 1:
            return 0
        alive_neg, alive_zero = self.neg.runs.total, self.zeros.runs.total
        # F(bound) = number of alive weights <= bound; the votes are its differences.
        f_neg = alive_neg - self.neg.runs.before(np.searchsorted(self.neg.keys_np, self.neg.keys_of(cands.neg_query)))
        f_pos = self.pos.runs.before(np.searchsorted(self.pos.keys_np, self.pos.keys_of(cands.pos_query), side="right"))
        f = np.concatenate([[0], f_neg, alive_neg + alive_zero + f_pos,
                            [alive_neg + alive_zero + self.pos.runs.total]])
        return int(np.argmax(np.diff(f)))

    # ------------------------------------------------------------------ steps 3-6 for the zero centre
    def take_zero(self, needed: int, a: float) -> int:
        """Zero centre: cost 0 below γ0 (free), 1 elsewhere; order by |w| then flat index."""
        zeros = self.zeros
        if zeros.runs.total >= needed:
            return self.take(zeros, _Take([], [zeros.runs.positions(0, zeros.n)[:needed]]), 0.0)
        taken = self.take(zeros, _Take([(0, zeros.n)], []), 0.0)
        groups = ["below"] + (["above"] if a >= 1.0 else [])  # cost-1 weights have mean exactly 1
        for which in groups:
            windows = []
            for side in (self.pos, self.neg):
                cut = side.search(self.zero_threshold)
                windows.append((0, cut) if which == "below" else (cut, side.n))
            take_p, take_n = _first_by_magnitude(self.pos, windows[0], self.neg, windows[1], needed - taken)
            taken += self.take(self.pos, take_p, 0.0) + self.take(self.neg, take_n, 0.0)
            if taken >= needed:
                break
        return taken

    # ------------------------------------------------------------------ steps 3-6 for a non-zero centre
    def take_nonzero(self, centre: float, needed: int, a: float, right_exact: bool) -> int:
        same, other = (self.pos, self.neg) if centre > 0 else (self.neg, self.pos)
        c = abs(centre)
        p_lt, p_le = same.search(c), same.search(c, right=True)
        n_free = same.runs.count(p_lt, p_le)  # w == c*: cost exactly 0, taken first, by index
        if n_free >= needed:
            return self.take(same, _Take([], [same.runs.positions(p_lt, p_le)[:needed]]), centre)
        if n_free == 0 and a < 1 and _cheapest_costs_above(same, p_lt, p_le, c, a):
            return 0  # an empty pass, decided from the two nearest weights
        walk = _Walk(same, other, c, p_lt, p_le, right_exact)
        take_same, take_other = walk.take(needed - n_free, a)
        take_same.ranges.append((p_lt, p_le))
        return self.take(same, take_same, centre) + self.take(other, take_other, centre)


def _cheapest_costs_above(same: _Side, p_lt: int, p_le: int, c: float, a: float) -> bool:
    """True when no alive weight can cost ``<= a`` to the centre ``c`` (mirrored positive), for ``a < 1``.

    On the centre's side the cost grows moving away from ``c``, so the cheapest weights are the
    nearest alive one below and above it; the opposite side costs at least 1. Costs are computed as
    the walk computes them (``fl(|m - c|) / m``) and must exceed ``a`` by a margin far above rounding,
    so that a weight further out (whose float cost could wobble by an ulp) cannot cost ``<= a``
    either. Otherwise the caller walks, which decides exactly.
    """
    limit = a * (1.0 + 1e-9)
    below, above = same.runs.last_before(p_lt), same.runs.first_from(p_le)
    if below >= 0:
        m = same.mag_at(below)
        if (c - m) / m <= limit:  # m > 0: zeros are not on either side
            return False
    if above >= 0:
        m = same.mag_at(above)
        if (m - c) / m <= limit:
            return False
    return True


def _first_by_magnitude(
    side_a: _Side, window_a: tuple[int, int], side_b: _Side, window_b: tuple[int, int], count: int
) -> tuple[_Take, _Take]:
    """The first ``count`` alive weights of two windows (one per sign) by (|w|, flat index).

    Bisects on the magnitude's bit pattern with alive counts, so nothing is materialised except the
    weights tied at the cut.
    """
    sides, windows = (side_a, side_b), (window_a, window_b)
    total = sum(side.runs.count(*w) for side, w in zip(sides, windows))
    if total <= count:
        return _Take([window_a], []), _Take([window_b], [])

    def edges(bits: int, right: bool) -> list[int]:  # per side: first position with |w| >= (or >) bits
        out = []
        for side, (lo, hi) in zip(sides, windows):
            key = side.keys_np.dtype.type(bits + side.sign_bit)  # not a Python int: see _Side.key_of
            out.append(min(max(int(np.searchsorted(side.keys_np, key, side="right" if right else "left")), lo), hi))
        return out

    def below(bits: int) -> int:  # alive weights with magnitude bits < bits
        return sum(side.runs.count(lo, e) for side, (lo, _), e in zip(sides, windows, edges(bits, False)))

    lo_bits, hi_bits = 0, 2 ** (63 if side_a.wide else 31)  # below(lo) < count <= below(hi)
    while hi_bits - lo_bits > 1:
        mid = (lo_bits + hi_bits) // 2
        lo_bits, hi_bits = (mid, hi_bits) if below(mid) < count else (lo_bits, mid)
    cut = lo_bits  # the count-th weight has these magnitude bits
    start, stop = edges(cut, False), edges(cut, True)
    ties = [side.runs.positions(a, b) for side, a, b in zip(sides, start, stop)]
    idx = torch.cat([side.idx[t] for side, t in zip(sides, ties)])
    chosen = torch.argsort(idx)[: count - below(cut)]
    na = ties[0].numel()
    takes = []
    for i, ((lo, _), a, t) in enumerate(zip(windows, start, ties)):
        mine = chosen[chosen < na] if i == 0 else chosen[chosen >= na] - na
        takes.append(_Take([(lo, a)], [torch.sort(t[mine]).values]))
    return takes[0], takes[1]


def _canonical(cost: torch.Tensor, mag: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Permutation ordering by cost, then |w|, then flat index (section 3, step 4)."""
    order = torch.argsort(idx, stable=True)
    order = order[torch.argsort(mag[order], stable=True)]
    return order[torch.argsort(cost[order], stable=True)]


# =============================================================================== the walk
LEFT, RIGHT, OTHER = 0, 1, 2


def _is_monotone(cost: np.ndarray) -> bool:
    return bool((cost[1:] >= cost[:-1]).all())


class _Chunk:
    """The alive weights of one window of a side, in walking order, with their costs.

    ``LEFT`` (same sign, |w| < c) and ``OTHER`` (opposite sign) walk down from the window's top,
    ``RIGHT`` (same sign, |w| > c) walks up; costs are ascending along the walk when ``monotone``.
    """

    __slots__ = ("side", "kind", "lo", "hi", "first", "pos", "cost", "cost_np", "monotone", "_sums")

    def __init__(self, side: _Side, kind: int, lo: int, hi: int, c: float, check: bool) -> None:
        self.side, self.kind, self.lo, self.hi = side, kind, lo, hi
        pieces = side.runs.slices(lo, hi)
        self.first: int | None = None
        self.pos: torch.Tensor | None = None
        if len(pieces) == 1:  # contiguous: no position tensor needed
            self.first = pieces[0][0]
            m = side.mags_np(*pieces[0])
        else:
            self.pos = side.runs.positions(lo, hi)
            m = side.mags_np_at(self.pos.numpy())
        if kind != RIGHT:  # walk down
            m = m[::-1]
            if self.pos is not None:
                self.pos = self.pos.flip(0)
        # fl(|m - c|) (or fl(m + c)), then one division by m: relative_distance's float64 operations.
        cost = (c - m) if kind == LEFT else (m - c) if kind == RIGHT else (m + c)
        cost /= m
        del m
        self.cost, self.cost_np = torch.from_numpy(cost), cost
        self.monotone = not check or _is_monotone(self.cost_np)
        self._sums: np.ndarray | None = None

    @property
    def down(self) -> bool:
        return self.kind != RIGHT

    def __len__(self) -> int:
        return self.cost.numel()

    def sums(self) -> np.ndarray:
        """Cumulative sums of the costs along the walk (any order's error is bounded; see ``_decide``)."""
        if self._sums is None:
            self._sums = torch.cumsum(self.cost, 0).numpy()
        return self._sums

    def span(self, i: int, j: int) -> torch.Tensor:
        """Positions of walk steps ``i..j-1`` (walking order)."""
        if self.pos is not None:
            return self.pos[i:j]
        if self.down:
            top = self.first + len(self) - 1
            return torch.arange(top - i, top - j, -1, dtype=torch.int64)
        return torch.arange(self.first + i, self.first + j, dtype=torch.int64)

    def at(self, i: int) -> int:
        if self.pos is not None:
            return int(self.pos[i])
        return self.first + (len(self) - 1 - i if self.down else i)


class _Walk:
    """Cost-ordered walk outward from a non-zero centre ``c`` (mirrored to be positive).

    The cost-sorted order is a merge of three monotone sequences: ``LEFT`` (``fl(c − m)/m``, provably
    monotone), ``RIGHT`` (``fl(m − c)/m``, monotone when ``m − c`` is exact, else checked) and
    ``OTHER`` (checked); a window that fails the check is ordered exactly instead. Windows grow in
    shells (new chunks), so nothing is materialised twice.
    """

    def __init__(self, same: _Side, other: _Side, c: float, p_lt: int, p_le: int, right_exact: bool) -> None:
        self.same, self.other, self.c, self.p_lt, self.p_le = same, other, c, p_lt, p_le
        self.right_exact = right_exact

    def _windows(self, x: float) -> tuple[int, int, int]:
        """Window edges holding every alive weight of cost <= x (with a safety margin)."""
        c, xm = self.c, x * (1 + 1e-9) + 1e-12  # margin far above the rounding of costs and bounds
        lo_left = 0 if math.isinf(xm) else self.same.search(c / (1 + xm))
        hi_right = self.same.n if xm >= 1 else self.same.search(c / (1 - xm), right=True)
        if xm <= 1:
            lo_other = self.other.n
        else:
            bound = c / (xm - 1)
            lo_other = self.other.n if math.isinf(bound) else self.other.search(bound)
        return lo_left, hi_right, lo_other

    def _count(self, w: tuple[int, int, int]) -> int:
        return (self.same.runs.count(w[0], self.p_lt) + self.same.runs.count(self.p_le, w[1])
                + self.other.runs.count(w[2], self.other.n))

    def _chunks(self, old: tuple[int, int, int], new: tuple[int, int, int]) -> list[_Chunk]:
        """Chunks for the shell between the windows ``old`` and ``new``."""
        specs = [(self.same, LEFT, new[0], old[0], False), (self.same, RIGHT, old[1], new[1], not self.right_exact),
                 (self.other, OTHER, new[2], old[2], True)]
        return [_Chunk(side, kind, lo, hi, self.c, check) for side, kind, lo, hi, check in specs
                if side.runs.count(lo, hi)]

    def take(self, needed: int, a: float) -> tuple[_Take, _Take]:
        """What the pass takes (beyond the free weights equal to c) on the same and the other side."""
        x = 2.5 * a
        w = self._windows(x)
        n = self._count(w)
        while n > 4 * needed + _EXACT_LIMIT and x > 1e-12:  # keep the window near what is needed
            w2 = self._windows(x / 4)
            n2 = self._count(w2)
            if n2 < needed:
                break
            x, w, n = x / 4, w2, n2
        while n < _MIN_WINDOW and w != (0, self.same.n, 0):  # counting is cheaper than another round
            x = math.inf if x > 1e12 else 4 * x
            w = self._windows(x)
            n = self._count(w)
        chunks = self._chunks((self.p_lt, self.p_le, self.other.n), w)
        while True:
            everything = w == (0, self.same.n, 0)
            limit = math.inf if everything else x
            if all(ch.monotone for ch in chunks):
                ks = [int(np.searchsorted(ch.cost_np, limit, side="right")) for ch in chunks]
                fast = sum(ks) > _EXACT_LIMIT
                result = _prefix_sorted(chunks, ks, needed, a, fast)
                if result is None:  # the fast decision could not be proven: decide exactly
                    result = _prefix_sorted(chunks, ks, needed, a, False)
            else:
                result = _prefix_general(chunks, limit, needed, a)
            counts, extra, exhausted = result
            if not exhausted or everything:
                return self._takes(chunks, counts, extra)
            x = math.inf if x > 1e12 else 4 * x
            w_new = self._windows(x)
            chunks += self._chunks(w, w_new)
            w = w_new

    def _takes(self, chunks: list[_Chunk], counts: list[int], extra: list[torch.Tensor | None]) -> tuple[_Take, _Take]:
        """Each chunk's walked prefix (a range of alive positions) plus its explicit extra positions."""
        same, other = _Take([], []), _Take([], [])
        for ch, k, ex in zip(chunks, counts, extra):
            target = other if ch.kind == OTHER else same
            if k:
                far = ch.at(k - 1)
                target.ranges.append((far, ch.hi) if ch.down else (ch.lo, far + 1))
            if ex is not None and ex.numel():
                target.explicit.append(ex)
        return same, other


# =============================================================================== the running mean
# The decisions below work on NumPy views of the chunks' costs: a pass asks many small questions,
# and NumPy's per-call overhead is several times lower than torch's for those.
def _certainly_below(mean: np.ndarray, n: np.ndarray, a: float) -> np.ndarray:
    """The exact mean, and so the sequential float64 one, is certainly <= a (error bound ~ n·u)."""
    return mean < a * (1.0 - 4.0 * (n + 16.0) * _U)


def _certainly_above(mean: np.ndarray, n: np.ndarray, a: float) -> np.ndarray:
    return mean > a * (1.0 + 4.0 * (n + 16.0) * _U)


def _decide(values: np.ndarray, base_n: int, base_s: float, needed: int, a: float, fast: bool):
    """Running mean over ascending non-zero ``values`` after ``base_n`` costs summing to ``base_s``.

    Returns (number of values taken, status) with status ``"done"``, ``"more"`` (all taken, the mean
    never exceeded ``a``, fewer than ``needed``) or ``"unsure"`` (fast mode could not prove it).
    Exact mode is the sequential float64 rule itself (``np.cumsum`` adds in order); fast mode accepts
    a decision only when the error bound of any summation order cannot change it.
    """
    room, size = needed - base_n, values.size
    if size == 0:
        return 0, ("more" if room > 0 else "done")
    running = np.cumsum(values) if base_s == 0 else np.cumsum(np.concatenate(([base_s], values)))[1:]
    n_run = np.arange(base_n + 1, base_n + 1 + size, dtype=np.float64)
    mean = running / n_run
    if not fast:
        over = mean > a
        j = int(np.argmax(over))
        if over[j]:
            return min(j, room), "done"
        return (room, "done") if size >= room else (size, "more")
    ok = (n_run <= needed) & _certainly_below(mean, n_run, a)
    j = int(np.argmin(ok))
    if ok[j]:
        return size, "more"
    if n_run[j] > needed:
        return room, "done"
    if _certainly_above(mean[j], n_run[j], a):
        return j, "done"
    return j, "unsure"


def _prefix_sorted(chunks: list[_Chunk], ks: list[int], needed: int, a: float, fast: bool):
    """Longest admissible prefix over monotone chunks cut at ``ks``.

    Exact mode sorts every cost value and sums sequentially. Fast mode narrows, with prefix sums
    per chunk, to a small bracket around the point where the running mean crosses ``a`` (or the cap
    is reached) and sorts only that. Returns (walked counts, extra positions, exhausted) per chunk,
    or None when fast mode cannot prove its decision.
    """
    costs = [ch.cost_np[:k] for ch, k in zip(chunks, ks)]
    if fast:
        lo, hi, base_n, base_s = _narrow(costs, [ch.sums()[:k] for ch, k in zip(chunks, ks)], needed, a)
    else:
        lo, hi, base_n, base_s = [0] * len(costs), list(ks), 0, 0.0
    segments = [c[a:b] for c, a, b in zip(costs, lo, hi) if b > a]
    if len(segments) == 1:
        values = segments[0]
    else:  # a stable NumPy sort is a merge of the already sorted segments
        values = np.sort(np.concatenate(segments), kind="stable") if segments else np.empty(0)
    taken, status = _decide(values, base_n, base_s, needed, a, fast)
    if status == "unsure" or (status == "more" and hi != ks):
        return None
    counts, extra = _select(chunks, costs, lo, hi, values, taken)
    return counts, extra, status == "more"


def _narrow(costs: list[np.ndarray], sums: list[np.ndarray], needed: int, a: float):
    """Bracket ``[lo_i, hi_i)`` per chunk holding the first weight whose decision is not certain.

    Returns the bracket and the count and sum of everything before it.
    """
    lo = [0] * len(costs)
    hi = [c.size for c in costs]
    base_n, base_s = 0, 0.0
    size = sum(hi)
    while size > _BRACKET_LIMIT:
        samples = [c[a + (np.arange(_SAMPLES) * (b - a)) // _SAMPLES] for c, a, b in zip(costs, lo, hi) if b > a]
        samples += [c[b - 1 : b] for c, a, b in zip(costs, lo, hi) if b > a]
        thresholds = np.unique(np.concatenate(samples))
        n_t = np.zeros(thresholds.size, dtype=np.int64)
        s_t = np.zeros(thresholds.size)
        for c, cs in zip(costs, sums):
            if c.size:
                k = np.searchsorted(c, thresholds, side="right")
                n_t += k
                s_t += np.where(k > 0, cs[np.maximum(k - 1, 0)], 0.0)
        n_f = n_t.astype(np.float64)
        ok = (n_t <= needed) & _certainly_below(s_t / np.maximum(n_f, 1.0), n_f, a)
        g = int(np.argmin(ok)) if not ok.all() else thresholds.size
        if g > 0:
            lo = [int(np.searchsorted(c, thresholds[g - 1], side="right")) for c in costs]
            base_n, base_s = int(n_t[g - 1]), float(s_t[g - 1])
        if g < thresholds.size:
            hi = [int(np.searchsorted(c, thresholds[g], side="right")) for c in costs]
        new_size = sum(b - a for a, b in zip(lo, hi))
        if new_size >= size:  # one long run of equal costs: it is ordered as a whole
            break
        size = new_size
    return lo, hi, base_n, base_s


def _select(chunks: list[_Chunk], costs: list[np.ndarray], lo: list[int], hi: list[int],
            values: np.ndarray, taken: int):
    """Split the first ``taken`` bracket costs into walked prefixes and tie-broken extra positions.

    Every cost below the last taken value ``v`` is taken; among costs equal to ``v`` the smaller
    ``|w|`` and then the lower flat index go first (step 4).
    """
    counts, extra = list(lo), [None] * len(chunks)
    if taken == 0:
        return counts, extra
    v = values[taken - 1]
    ties_needed = taken - int(np.searchsorted(values, v))
    tie_ranges = []
    for i, (c, a, b) in enumerate(zip(costs, lo, hi)):
        seg = c[a:b]
        less, upto = int(np.searchsorted(seg, v)), int(np.searchsorted(seg, v, side="right"))
        counts[i] = a + less
        if upto > less:
            tie_ranges.append((i, a + less, a + upto))
    if len(tie_ranges) == 1:  # within one chunk ascending position is (|w|, index) order
        i, start, stop = tie_ranges[0]
        if chunks[i].down:  # walking down: the smallest positions are at the end of the tie run
            extra[i] = chunks[i].span(stop - ties_needed, stop).flip(0)
        else:
            counts[i] = start + ties_needed
        return counts, extra
    pos = [chunks[i].span(s, e) for i, s, e in tie_ranges]
    mag = torch.cat([chunks[i].side.mags64(p) for (i, _, _), p in zip(tie_ranges, pos)])
    idx = torch.cat([chunks[i].side.idx[p] for (i, _, _), p in zip(tie_ranges, pos)])
    owner = torch.cat([torch.full((p.numel(),), i) for (i, _, _), p in zip(tie_ranges, pos)])
    order = _canonical(torch.zeros_like(mag), mag, idx)[:ties_needed]
    flat_pos = torch.cat(pos)
    for i, _, _ in tie_ranges:
        mine = order[owner[order] == i]
        if mine.numel():
            extra[i] = torch.sort(flat_pos[mine]).values
    return counts, extra


def _prefix_general(chunks: list[_Chunk], limit: float, needed: int, a: float):
    """Exact rule when some chunk's floating-point costs are not monotone: order every weight."""
    pos = [ch.span(0, len(ch)) for ch in chunks]
    keep = [ch.cost <= limit for ch in chunks]
    cost = torch.cat([ch.cost[k] for ch, k in zip(chunks, keep)])
    mag = torch.cat([ch.side.mags64(p[k]) for ch, p, k in zip(chunks, pos, keep)])
    idx = torch.cat([ch.side.idx[p[k]] for ch, p, k in zip(chunks, pos, keep)])
    order = _canonical(cost, mag, idx)
    taken, status = _decide(cost[order].numpy(), 0, 0.0, needed, a, fast=False)
    chosen = order[:taken]
    extra, start = [], 0
    for p, k in zip(pos, keep):
        mine_pos = p[k]
        size = mine_pos.numel()
        mine = chosen[(chosen >= start) & (chosen < start + size)] - start
        extra.append(torch.sort(mine_pos[mine]).values)
        start += size
    return [0] * len(chunks), extra, status == "more"

