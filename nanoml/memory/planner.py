"""TFLM's GreedyMemoryPlanner, re-expressed in Python.

Behaviour reproduced (from how the library works, not its code):
- buffers are placed largest first; equal sizes keep the order in which they
  were added (the library's sort is a stable bubble sort), offline-planned
  buffers first and in their own order;
- each buffer goes at the lowest offset, scanning the already placed buffers
  that are alive at the same time in increasing offset order, where the gap
  up to the next such buffer is large enough (or after the last one);
- the plan's size is the highest end offset of any placed buffer.
Lifetimes are inclusive [first, last] allocation-scope indices.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = -1


@dataclass
class Buffer:
    size: int
    first: int
    last: int
    offline_offset: int = ONLINE


def plan(buffers: list[Buffer]) -> tuple[list[int], int]:
    """Offsets (in the order given) and the plan's total size in bytes."""
    n = len(buffers)
    if n == 0:
        return [], 0
    offline = [i for i, b in enumerate(buffers) if b.offline_offset != ONLINE]
    online = [i for i, b in enumerate(buffers) if b.offline_offset == ONLINE]
    # Stable sort, descending size; the library puts online buffers into its
    # sort array back to front (last added first) before bubble-sorting.
    online_rev = list(reversed(online))
    online_sorted = sorted(online_rev, key=lambda i: -buffers[i].size)
    order = offline + online_sorted

    offsets = [-1] * n
    placed: list[tuple[int, int]] = []   # (offset, buffer index), kept sorted by offset
    first = order[0]
    offsets[first] = buffers[first].offline_offset if buffers[first].offline_offset != ONLINE else 0
    placed.append((offsets[first], first))
    for bid in order[1:]:
        want = buffers[bid]
        if want.offline_offset != ONLINE:
            cand = want.offline_offset
        else:
            cand = 0
            for off, pid in placed:
                p = buffers[pid]
                if p.first > want.last or want.first > p.last:
                    continue            # not alive at the same time
                if off - cand >= want.size:
                    break               # the gap before this one is big enough
                cand = max(cand, off + p.size)
        offsets[bid] = cand
        # insert keeping offset order; equal offsets go after existing ones,
        # except that a new smallest offset goes to the front
        if cand < placed[0][0]:
            placed.insert(0, (cand, bid))
        else:
            k = 1
            while k < len(placed) and placed[k][0] <= cand:
                k += 1
            placed.insert(k, (cand, bid))
    total = max(offsets[i] + buffers[i].size for i in range(n))
    return offsets, total
