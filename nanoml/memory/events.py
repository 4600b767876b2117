"""The allocation steps of MicroInterpreter construction + AllocateTensors() +
Invoke(), as an event stream for allocator.replay().

Order (TFLM as shipped in the Arduino libraries):
 1. constructor: arena allocator, GreedyMemoryPlanner, MicroAllocator (tail);
 2. StartModelAllocation: builtin-data allocator, scratch-request area in the
    head (12 requests), SubgraphAllocations, TfLiteEvalTensor arrays,
    NodeAndRegistration arrays; then each op's builtin params (parse);
 3. every kernel's Init (op data), then every kernel's Prepare (temporaries,
    persistent buffers, scratch requests); after each Prepare the temporaries
    are reset and the head grows to hold the requests so far + 12;
 4. FinishModelAllocation: scratch handles, variable tensors, then the memory
    plan: AllocationInfo (temp), the planner's scratch (all remaining memory,
    40 bytes per planned buffer), the plan itself becomes the head;
 5. input/output TfLiteTensor structs (persistent);
 6. Invoke: no allocations for the modelled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.tflite import DTYPE_BYTES, Model
from . import kernels
from .allocator import Ev
from .planner import Buffer, plan

TYPE_BYTES = DTYPE_BYTES      # TFLM's element sizes (int4: one byte per element in the arena)


@dataclass
class GraphFacts:
    model: Model
    quant: list[list[int]]                 # per subgraph, per tensor: channels (0 = none)
    scratch_requests: list[int] = field(default_factory=list)
    scratch_owner: list[tuple[int, int]] = field(default_factory=list)   # (subgraph, op)
    _obj: int = 0

    def new_obj(self) -> int:
        self._obj += 1
        return self._obj

    def next_obj(self) -> int:
        return self._obj + 1

    def quant_channels(self, sg: int, t: int) -> int:
        return self.quant[sg][t]


def _quant_channels(model: Model) -> list[list[int]]:
    """Channels of each tensor's quantization as TFLM copies it (the reader's
    Quantization exists only when the file has both a scale and a zero_point)."""
    return [[t.quant.channels if t.quant else 0 for t in sg.tensors] for sg in model.subgraphs]


def offline_offsets(model: Model) -> list[int] | None:
    """Tensor offsets from the "OfflineMemoryAllocation" metadata (planned ahead
    of time; the library honours them, -1 = plan online; checked by the reader),
    else None."""
    return model.offline_plan


def has_offline_plan(model: Model) -> bool:
    return offline_offsets(model) is not None


def tensor_bytes(t) -> int:
    n = 1
    for d in t.shape:
        n *= max(d, 1) if d < 0 else d
    return n * TYPE_BYTES.get(t.dtype, 0)


@dataclass
class Stream:
    events: list[Ev]
    plan_bytes: int
    planned_buffers: int
    scratch_bytes: int
    activation_bytes: int       # plan size without the scratch buffers
    unmodelled: list[str]


def _lifetimes(model: Model, facts: GraphFacts, sg_index: int = 0):
    """AllocationInfo lifetimes (first_created, last_used) for tensors of the
    main subgraph, plus one entry per scratch request. Control-flow ops
    (IF/WHILE/CALL_ONCE) are not modelled (caller marks them unmodelled)."""
    sg = model.subgraphs[sg_index]
    n = len(sg.tensors)
    first = [-1] * n
    last = [-1] * n
    scope = 0
    for t in sg.inputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    scratch_life: dict[int, tuple[int, int]] = {}
    owned: dict[int, list[int]] = {}            # op index -> its scratch requests
    for k, (s, o) in enumerate(facts.scratch_owner):
        if s == sg_index:
            owned.setdefault(o, []).append(k)
    for i, op in enumerate(sg.operators):
        scope += 1
        for t in op.outputs:
            if t >= 0 and first[t] == -1:
                first[t] = scope
        start = scope
        for t in op.inputs:
            if t >= 0:
                last[t] = scope
        for t in op.outputs:
            if t >= 0:
                last[t] = scope
        for k in owned.get(i, ()):
            scratch_life[k] = (start, scope)
    for t in sg.outputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    return first, last, scratch_life


def build(model: Model, prof: dict, static_memory: bool) -> Stream:
    structs = dict(prof["structs"]["common"])
    structs.update(prof["structs"]["static" if static_memory else "dynamic"])
    kprof = dict(structs)
    kprof.update(prof.get("kernel_flags", {}))
    facts = GraphFacts(model=model, quant=_quant_channels(model))
    ev: list[Ev] = []
    unmodelled: list[str] = []
    P = lambda size, align, tag: ev.append(Ev("P", size, align, tag))
    nsub = len(model.subgraphs)
    sbr = structs["ScratchBufferRequest"]
    max_req = prof["max_scratch_requests_per_op"]

    # 1. interpreter construction
    P(structs["SingleArenaBufferAllocator"], 4, "allocator objects")
    P(structs["GreedyMemoryPlanner"], 4, "allocator objects")
    P(structs["MicroAllocator"], 4, "allocator objects")
    ev.append(Ev("M", tag="AllocateTensors"))
    # 2. StartModelAllocation
    P(structs["MicroBuiltinDataAllocator"], 4, "allocator objects")
    ev.append(Ev("H", sbr * max_req, 4))
    P(structs["SubgraphAllocations"] * nsub, 4, "allocator objects")
    for sg in model.subgraphs:
        P(structs["TfLiteEvalTensor"] * len(sg.tensors), 4, "TfLiteEvalTensor data")
    for sg in model.subgraphs:
        P(structs["NodeAndRegistration"] * len(sg.operators), 4, "NodeAndRegistration structs")
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.op == "CUSTOM":
                continue
            bp = prof["builtin_params"].get(op.op, "missing")
            if bp == "missing":
                unmodelled.append(f"{op.op}: no builtin-params size known")
            elif bp:
                P(bp[0], bp[1], "builtin params")
    # 3. Init + Prepare
    for sg in model.subgraphs:
        for op in sg.operators:
            ev.append(Ev("M", tag=f"Init {op.display_name} #{op.index}"))
            size = prof["init_bytes"].get(op.op)
            if op.op == "CUSTOM" or size is None:
                unmodelled.append(f"{op.display_name}: no allocation model for this op (pessimistic allowance used)")
                P(kernels.UNMODELLED_PERSISTENT, 16, "unmodelled allowance")
            elif size:
                P(size, 16, "op data")
    n_requests = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            ev.append(Ev("M", tag=f"Prepare {op.display_name} #{op.index}"))
            fn = kernels.PREPARE.get(op.op, "missing")
            variant = prof.get("kernels", {}).get(op.op)
            if variant:
                fn = kernels.VARIANTS[variant]
            before = len(facts.scratch_requests)
            ctx = kernels.OpCtx(facts, sg, op, ev, kprof)
            if fn == "missing" or op.op == "CUSTOM":
                unmodelled.append(f"{op.display_name}: no allocation model for this op (pessimistic allowance used)")
                kernels.prep_unmodelled(ctx)
            elif fn is not None:
                mark = len(ev)
                try:
                    fn(ctx)
                except (kernels.Unmodelled, IndexError, KeyError, ZeroDivisionError) as e:
                    why = str(e) if isinstance(e, kernels.Unmodelled) else \
                        f"unexpected tensor layout ({e!r})"
                    unmodelled.append(f"{op.display_name}: {why}")
                    # drop what was emitted and use the pessimistic stand-in
                    for e2 in ev[mark:]:
                        if e2.kind == "S":
                            facts.scratch_requests.pop()
                    del ev[mark:]
                    kernels.prep_unmodelled(ctx)
            for _ in range(len(facts.scratch_requests) - before):
                facts.scratch_owner.append((sg.index, op.index))
            n_requests = len(facts.scratch_requests)
            ev.append(Ev("R"))
            ev.append(Ev("H", sbr * (n_requests + max_req), 4))
    if any(d < 0 for sg in model.subgraphs for t in sg.tensors for d in t.shape):
        unmodelled.append("a tensor has an unknown (-1) dimension: TFLM needs static shapes "
                          "(convert with a fixed batch size)")
    offline = offline_offsets(model)
    if offline is not None:
        unmodelled.append("offline-planned tensor offsets (OfflineMemoryAllocation metadata): "
                          "honoured as the library does, not verified on a board")
    if any(op.op in ("IF", "WHILE", "CALL_ONCE") for op in model.operators):
        unmodelled.append("control-flow subgraphs (IF/WHILE/CALL_ONCE): lifetimes not modelled")

    # 4. FinishModelAllocation
    ev.append(Ev("M", tag="memory planning"))
    if n_requests:
        P(structs["ScratchBufferHandle"] * n_requests, 4, "scratch buffer handles")

    def variables():
        for sg in model.subgraphs:
            for t in sg.tensors:
                if t.is_variable:
                    P(tensor_bytes(t), 16, "variable tensors")
    if prof["variables_allocated"] == "before_plan":
        variables()
    ntensors = sum(len(sg.tensors) for sg in model.subgraphs)
    ev.append(Ev("T", structs["size_t"] * nsub, 4, "info"))
    ev.append(Ev("T", structs["AllocationInfo"] * (ntensors + n_requests), 4, "info"))
    if prof["variables_allocated"] == "during_plan":
        variables()

    # the plan
    buffers: list[Buffer] = []
    first, last, scratch_life = _lifetimes(model, facts, 0)
    for sg in model.subgraphs:
        for t in sg.tensors:
            nb = tensor_bytes(t)
            if t.is_const or t.is_variable or nb == 0:
                continue
            if sg.index == 0:
                off = offline[t.index] if offline and t.index < len(offline) else -1
                buffers.append(Buffer((nb + 15) // 16 * 16, first[t.index], last[t.index], off))
            else:
                buffers.append(Buffer((nb + 15) // 16 * 16, -1, -1))
                unmodelled.append("tensors of non-main subgraphs: lifetimes not modelled")
    n_act = len(buffers)
    for k, nbytes in enumerate(facts.scratch_requests):
        f, l = scratch_life.get(k, (-1, -1))
        buffers.append(Buffer((nbytes + 15) // 16 * 16, f, l))
    _, plan_bytes = plan(buffers)
    # the planner is quadratic in the buffers: plan the activations alone only
    # when scratch buffers make the two plans differ
    act_bytes = plan(buffers[:n_act])[1] if n_act < len(buffers) else plan_bytes
    ev.append(Ev("A", len(buffers)))
    ev.append(Ev("D"))
    ev.append(Ev("D"))
    ev.append(Ev("D"))
    ev.append(Ev("R"))
    ev.append(Ev("H", 0, 1))
    ev.append(Ev("V", plan_bytes, 16))

    # 5. input/output tensors
    ev.append(Ev("M", tag="input/output tensors"))
    main = model.subgraphs[0]
    for group in (main.inputs, main.outputs):
        P(structs["pointer"] * len(group), 16, "input/output TfLiteTensor")
        for ti in group:
            P(structs["TfLiteTensor"], 4, "input/output TfLiteTensor")
            nq = facts.quant_channels(0, ti)
            if nq:
                P(structs["TfLiteAffineQuantization"], 4, "input/output TfLiteTensor")
                P(4 + 4 * nq, 4, "input/output TfLiteTensor")
    ev.append(Ev("M", tag="Invoke"))
    for sg in model.subgraphs:
        for op in sg.operators:
            fn = kernels.EVAL.get(op.op)
            if fn is not None:
                ev.append(Ev("M", tag=f"Invoke {op.display_name} #{op.index}"))
                fn(kernels.OpCtx(facts, sg, op, ev, kprof))
                ev.append(Ev("R"))
    return Stream(events=ev, plan_bytes=plan_bytes, planned_buffers=len(buffers),
                  scratch_bytes=sum(facts.scratch_requests), activation_bytes=act_bytes,
                  unmodelled=sorted(set(unmodelled)))
