"""Replay of TFLM's single-arena allocator over a stream of allocation events.

The arena is one buffer: "head" allocations (the memory plan, scratch-request
bookkeeping) and temporaries grow up from the start; persistent allocations
grow down from the end. Every check the library makes is reproduced as a
lower bound on the arena size N. Persistent allocations are aligned on
absolute addresses, so where they land depends on N modulo 16 (the largest
alignment used; the buffer itself is 16-aligned): the replay is done once per
residue, and the smallest N over the 16 residues is the minimal arena.

Memory-safety model (what counts as "works"):
- every check the library makes must pass;
- a temporary must never overlap persistent memory (the library's check is
  done in unsigned arithmetic and silently passes when it does; the temporary
  then overwrites kernel data);
- a persistent allocation may overlap temporaries that are already released
  or the zero-point array of a live temporary tensor (neither is read again),
  but not a live temporary tensor's struct or its quantization struct (read
  when it is released, a corrupted pointer there breaks the temp checksum or
  hangs).
The last rule was checked against an emulated Cortex-M4 run (see
docs/arena.md); treating any overlap as fatal instead gives an upper bound
that is at most 16 bytes higher on the models measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 16          # MicroArenaBufferAlignment()
PLANNER_BYTES_PER_BUFFER = 40   # GreedyMemoryPlanner per-buffer scratch (5 ints + 3-int list entry)


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


@dataclass
class Ev:
    kind: str            # P persistent, T temp, D release temp, R reset temps, H resize head,
                         # S scratch request, A planner arena, V reserve plan head, M phase mark
    size: int = 0
    align: int = 1
    tag: str = ""        # category (P) / part kind (T: struct|quant|zp|info)
    obj: int = -1        # temp object id (T/D)


@dataclass
class Replay:
    min_bytes: int
    used_bytes: int            # at a 16-aligned arena size
    persistent_bytes: int      # tail usage at a 16-aligned arena size
    head_bytes: int            # head (plan) usage at the end
    by_tag: dict[str, int]     # persistent bytes per category incl. alignment (16-aligned arena)
    binding: str               # which step sets the minimum
    residue: int               # N mod 16 of the minimum


def _run(events: list[Ev], r: int, semantics: str):
    """Replay for arenas N = 16k + r. Returns (lower bound on N, binding label,
    tail usage, head, temp, per-tag bytes)."""
    head = temp = 0
    toff = 0                     # persistent bytes used, measured from the arena end
    need = 0
    binding = ""
    live: dict[int, list[tuple[int, int, str]]] = {}   # temp obj -> [(start, end, part)]
    dead: set[int] = set()
    by_tag: dict[str, int] = {}
    phase = ""

    def req(x: int, why: str):
        nonlocal need, binding
        if x > need:
            need, binding = x, why

    for e in events:
        k = e.kind
        if k == "P":
            new = toff + e.size + ((r - toff - e.size) % e.align)
            floor = head
            if semantics == "strict":
                floor = max(floor, temp)
            elif semantics == "refined":
                for obj, parts in live.items():
                    if obj in dead:
                        continue
                    for s, end, part in parts:
                        if part != "zp" and end > floor:
                            floor = end
            req(floor + new, f"persistent {e.tag} ({phase})")
            by_tag[e.tag] = by_tag.get(e.tag, 0) + (new - toff)
            toff = new
        elif k == "T":
            start = align_up(temp, e.align)
            req(start + e.size + toff, f"temporary {e.tag} ({phase})")
            temp = start + e.size
            if e.obj >= 0:
                live.setdefault(e.obj, []).append((start, temp, e.tag))
        elif k == "D":
            dead.add(e.obj)
        elif k == "R":
            temp = head
            live.clear()
            dead.clear()
        elif k == "H":
            req(e.size + toff, f"head ({phase})")
            head = temp = e.size
        elif k == "A":
            # planner scratch = all remaining memory (16-aligned both ends); the
            # planner needs PLANNER_BYTES_PER_BUFFER per buffer it plans
            start = align_up(temp, ALIGN)
            req(start + PLANNER_BYTES_PER_BUFFER * e.size + toff + ((r - toff) % ALIGN),
                f"memory planner scratch ({e.size} buffers)")
        elif k == "V":
            req(e.size + toff, "memory plan")
            head = temp = e.size
        elif k == "M":
            phase = e.tag
    return need, binding, toff, head, temp, by_tag


def replay(events: list[Ev], semantics: str = "refined") -> Replay:
    best = None
    for r in range(ALIGN):
        need, binding, *_ = _run(events, r, semantics)
        n = need + ((r - need) % ALIGN)
        if best is None or n < best[0]:
            best = (n, binding, r)
    _, _, toff, head, temp, by_tag = _run(events, 0, semantics)
    return Replay(min_bytes=best[0], used_bytes=max(head, temp) + toff, persistent_bytes=toff,
                  head_bytes=head, by_tag=by_tag, binding=best[1], residue=best[2])


def render(events: list[Ev]) -> list[str]:
    """The events in the instrumented harness' log format (for comparison in tests/tools)."""
    out = []
    parts: dict[int, int] = {}
    for e in events:
        if e.kind in ("P", "T"):
            out.append(f"{e.kind} {e.size} {e.align}")
            if e.kind == "T" and e.obj >= 0:
                parts[e.obj] = parts.get(e.obj, 0) + 1
        elif e.kind == "D":
            out.extend(["D"] * parts.get(e.obj, 1))
        elif e.kind == "R":
            out.append(e.kind)
        elif e.kind in ("H", "V"):
            out.append(f"H {e.size} {e.align}")
        elif e.kind == "S":
            out.append(f"S {e.size}")
    return out
