"""Every private or semi-private PyTorch API the engine uses, in one place.

When PyTorch moves one of these, this is the only module to change:
``FakeTensorMode`` and its data-dependence exceptions, ``StorageWeakRef``,
``MemTracker`` (the fake-mode memory tracker of ``torch.distributed._tools``),
the flop formulas of ``torch.utils.flop_counter``, and the profiler's raw
Kineto events.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

try:  # torch.distributed may be absent from some builds
    from torch.distributed._tools.mem_tracker import MemTracker as _MemTracker
except ImportError:  # pragma: no cover - CPU builds on Linux ship it
    _MemTracker = None

__all__ = [
    "DATA_DEPENDENT_ERRORS",
    "CpuKernelShapes",
    "FakeTensorMode",
    "FlopCounter",
    "OpObserver",
    "PhaseMemTracker",
    "SavedTensorLedger",
    "StorageWeakRef",
    "current_op",
    "fake_mode",
    "flop_counter",
    "is_data_dependent_error",
    "kineto_memory_events",
    "kineto_range",
    "reference_flop_counter",
    "reset_current_op",
    "storage_key",
]

_OP = threading.local()


def current_op() -> Any:
    """The aten op our dispatch modes saw last in this thread (the one at fault when a trace fails)."""
    return getattr(_OP, "op", None)


def reset_current_op() -> None:
    _OP.op = None


DATA_DEPENDENT_ERRORS: tuple[type[BaseException], ...] = (
    DataDependentOutputException,
    DynamicOutputShapeException,
    UnsupportedOperatorException,
)

_META_MESSAGES = (
    "cannot be called on meta tensors",
    "data-dependent",
    "data-independent implementation does not exist",
    "Cannot copy out of meta tensor",
    "meta tensors",
)


def is_data_dependent_error(exc: BaseException) -> bool:
    """True when ``exc`` says the op needs real values (``.item()``, nonzero, data-dependent shapes)."""
    if isinstance(exc, DATA_DEPENDENT_ERRORS):
        return True
    return isinstance(exc, RuntimeError | NotImplementedError) and any(m in str(exc) for m in _META_MESSAGES)


class _QuietMetaFailures(logging.Filter):
    """FakeTensorMode logs every failing meta kernel at error level; the engine reports those to the caller."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("failed while attempting to run meta")


logging.getLogger("torch._subclasses.fake_tensor").addFilter(_QuietMetaFailures())


def fake_mode() -> FakeTensorMode:
    """A fake mode that also accepts real tensors (real parameters of a user's model, say)."""
    return FakeTensorMode(allow_non_fake_inputs=True)


def storage_key(tensor: torch.Tensor) -> StorageWeakRef:
    """A hashable key for the storage behind ``tensor``: views of one storage share it."""
    return StorageWeakRef(tensor.untyped_storage())


def _cpu_sdpa_formulas() -> dict[Any, Any]:
    """The CPU flash-attention kernel has no flop formula of its own; it costs what flash attention costs."""
    aten = torch.ops.aten
    mapping = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_registry:
        mapping[forward] = flop_registry[aten._scaled_dot_product_flash_attention]
    if backward is not None and backward not in flop_registry:
        mapping[backward] = flop_registry[aten._scaled_dot_product_flash_attention_backward]
    return mapping


class FlopCounter(TorchDispatchMode):
    """Counts FLOPs with the formulas of ``torch.utils.flop_counter`` (matmuls, convolutions, attention).

    The same numbers as ``FlopCounterMode`` (a test checks it on every zoo model),
    without its per-module bookkeeping and without decomposing the ops it has no
    formula for, which on meta tensors costs more than the ops themselves.
    ``total`` may also be advanced by hand, for layers whose kernels were skipped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self._formulas = _all_formulas()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        _OP.op = func
        out = func(*args, **kwargs)
        formula = self._formulas.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


class CpuKernelShapes(TorchDispatchMode):
    """Ops whose meta kernels disagree with the CPU kernels, answered right for tensors without data.

    Every op's ``dim`` argument is checked as the CPU kernels check it (some meta
    kernels, softmax's among them, accept any dim).

    ``aten._grouped_mm`` (mixture-of-experts layers): its meta kernel copies the CUDA
    kernel's bf16-only check, although the CPU kernel takes float32 too; the output's
    shape follows the op's documented layouts. ``aten.mkldnn_rnn_layer`` (an LSTM
    layer): its meta kernel returns an empty workspace, but in training the CPU
    kernel returns one that backward reads (``cpu_rnn.workspace_bytes``), so autograd
    saves it and a tracker must count it.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        check_dim_argument(func, args, kwargs)
        if func is torch.ops.aten._grouped_mm.default and _without_data(args[:2]):
            a, b = args[0], args[1]
            offs = args[2] if len(args) > 2 else kwargs.get("offs")
            out_dtype = (args[4] if len(args) > 4 else None) or kwargs.get("out_dtype") or a.dtype
            return torch.empty(grouped_mm_shape(a, b, offs), dtype=out_dtype, device=a.device)
        out = func(*args, **kwargs)
        if func is torch.ops.aten.mkldnn_rnn_layer.default and args[15] and _without_data(args[:1]):
            from .cpu_rnn import workspace_bytes

            x, hidden = args[0], args[10]
            # PyTorch hands each layer a time-major input whatever its batch_first flag says.
            size = workspace_bytes(x.shape[0], x.shape[1], hidden, x.dtype)
            out = (*out[:3], torch.empty(size, dtype=torch.uint8, device=x.device))
        return out


_DIM_TYPES = ("int", "int[1]", "int[]", "int?", "int[1]?", "int[]?")
_INSERTING = {"unsqueeze", "unsqueeze_", "unsqueeze_copy"}  # dim may be ndim: it names the new dimension


def _dim_position(func: Any) -> int | None:
    """Where an op takes ``dim`` after a ``self`` tensor (None when it takes no such pair)."""
    cached = _DIM_POSITIONS.get(func)
    if cached is None and func not in _DIM_POSITIONS:
        arguments = func._schema.arguments
        names = [a.name for a in arguments]
        if names and names[0] == "self" and "dim" in names and str(arguments[names.index("dim")].type) in _DIM_TYPES:
            cached = names.index("dim")
        _DIM_POSITIONS[func] = cached
    return cached


_DIM_POSITIONS: dict[Any, int | None] = {}


def check_dim_argument(func: Any, args: tuple, kwargs: dict) -> None:
    """Raise IndexError as ATen's wrap_dim does when ``dim`` is out of range for ``self``."""
    position = _dim_position(func)
    if position is None or not args or not isinstance(args[0], torch.Tensor):
        return
    dim = args[position] if len(args) > position else kwargs.get("dim")
    if dim is None:
        return
    ndim = max(args[0].dim(), 1) + (1 if func._schema.name.split("::")[-1] in _INSERTING else 0)
    for each in dim if isinstance(dim, list | tuple) else (dim,):
        if isinstance(each, int) and not -ndim <= each < ndim:
            raise IndexError(
                f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {each})"
            )


def _without_data(tensors: tuple[Any, ...]) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return all(isinstance(t, torch.Tensor) and (t.device.type == "meta" or isinstance(t, FakeTensor)) for t in tensors)


class OpObserver(TorchDispatchMode):
    """Calls ``callback(func, args, kwargs, output)`` after every aten op."""

    def __init__(self, callback: Callable[[Any, tuple, dict, Any], None]) -> None:
        super().__init__()
        self.callback = callback

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        _OP.op = func
        out = func(*args, **kwargs)
        self.callback(func, args, kwargs, out)
        return out


def _matmul_flops(a: Any, b: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """2 x multiply-adds of torch.matmul, with its broadcasting and 1-D rules."""
    a_shape, b_shape = list(a.shape), list(b.shape)
    if len(a_shape) == 1:
        a_shape = [1, *a_shape]
    if len(b_shape) == 1:
        b_shape = [*b_shape, 1]
    n, k, m = a_shape[-2], a_shape[-1], b_shape[-1]
    batch = torch.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))
    return 2 * math.prod(batch) * n * k * m


def _linear_flops(x: Any, weight: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    return 2 * math.prod(x.shape[:-1]) * weight.shape[0] * weight.shape[1]


def _conv_flops(x: Any, weight: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # out = batch * C_out * prod(out spatial); each needs C_in/groups * prod(kernel) multiply-adds
    return 2 * out_val.numel() * weight.shape[1] * math.prod(weight.shape[2:])


def _sdpa_flops(q: Any, k: Any, v: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    batch = math.prod(q.shape[:-2])
    return 2 * batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def grouped_mm_shape(a: Any, b: Any, offs: Any) -> tuple[int, ...]:
    """Output shape of ``aten._grouped_mm`` (the four layouts of its documentation)."""
    if a.dim() == 2 and b.dim() == 3:  # (m, k) x (g, k, n), groups of rows: (m, n)
        return (a.shape[0], b.shape[-1])
    if a.dim() == 3 and b.dim() == 3:  # (g, m, k) x (g, k, n): (g, m, n)
        return (a.shape[0], a.shape[1], b.shape[-1])
    if a.dim() == 2 and b.dim() == 2:  # (m, k) x (k, n), groups along k: (g, m, n)
        return (offs.shape[0], a.shape[0], b.shape[-1])
    return (a.shape[1], b.shape[-1])  # (g, m, k) x (k, n), groups of columns: (m, n)


def _grouped_mm_flops(a: Any, b: Any, offs: Any = None, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """Each output value is a k-long dot product; with k split into groups (2-D x 2-D), each sums one group's."""
    if a.dim() == 2 and b.dim() == 2:
        return 2 * a.shape[0] * b.shape[-1] * a.shape[-1]
    return 2 * out_val.numel() * a.shape[-1]


def _composite_formulas() -> dict[Any, Any]:
    """Ops that reach a dispatch mode undecomposed under inference_mode with fake tensors."""
    aten = torch.ops.aten
    return {
        aten.linear: _linear_flops,
        aten.matmul: _matmul_flops,
        aten.conv1d: _conv_flops,
        aten.conv2d: _conv_flops,
        aten.conv3d: _conv_flops,
        aten.scaled_dot_product_attention: _sdpa_flops,
        aten._grouped_mm: _grouped_mm_flops,
    }


@lru_cache(maxsize=1)
def _all_formulas() -> dict[Any, Any]:
    """torch's flop formulas plus ours, assembled once."""
    return {**flop_registry, **_cpu_sdpa_formulas(), **_composite_formulas()}


def flop_counter() -> FlopCounter:
    return FlopCounter()


def reference_flop_counter() -> FlopCounterMode:
    """torch's own ``FlopCounterMode`` (slower), to check ``FlopCounter`` against.

    Given the two formulas torch lacks: the CPU flash-attention kernel, and grouped
    matrix products (mixture-of-experts layers).
    """
    mapping = {**_cpu_sdpa_formulas(), torch.ops.aten._grouped_mm: _grouped_mm_flops}
    return FlopCounterMode(display=False, custom_mapping={k: _raw(v) for k, v in mapping.items()})


def _raw(formula: Callable[..., int]) -> Callable[..., int]:
    """Mark a formula that takes the op's own arguments and ``out_val`` (FlopCounterMode would wrap it again)."""

    def called(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs)

    called._get_raw = True  # type: ignore[attr-defined]
    return called


# ---------------------------------------------------------------- memory tracking


@dataclass(frozen=True)
class PhaseOpening:
    """What was live as a phase began: the bytes, by category, and the saved-for-backward bytes among them."""

    total: int
    categories: dict[str, int]
    saved: int


if _MemTracker is not None:
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, _MemRefType

    class _NoHandle:
        def remove(self) -> None:
            """Nothing was registered."""

    _NO_HANDLE = _NoHandle()

    class PhaseMemTracker(_MemTracker):
        """``MemTracker`` that also notes, at each new peak, the phase and the saved-activation bytes live.

        ``phase`` is set by the caller (forward, backward, optimizer). ``saved_live``
        is a callable returning the bytes of saved-for-backward storages alive now.
        """

        def __init__(self) -> None:
            super().__init__()
            self.phase = "setup"
            self.saved_live = lambda: 0
            self.peak_phase = "setup"
            self.peak_saved = 0
            self.peak_total = 0
            self.marker: Callable[[], int] = lambda: 0  # the caller's position at a new peak (a decode step...)
            self.peak_marker = 0
            self._frozen = False
            self.openings: dict[str, PhaseOpening] = {}  # what was live as each phase began

        @contextmanager
        def frozen(self) -> Iterator[None]:
            """Allocations and frees inside are tracked (the live bytes stay right), but set no peak: for work
            that stands in for steps not traced (a generation's skipped decode steps)."""
            self._frozen = True
            try:
                yield
            finally:
                self._frozen = False

        def _update_peak_stats(self, peak_state: Any) -> None:
            # Only the whole-model peak is needed: skip MemTracker's per-module peaks, which walk
            # every module after every op (most of its cost on a large model).
            if self._frozen:
                return
            for device, snapshot in self._curr_mem_snap.items():
                total = snapshot[_TOTAL_KEY]
                if self._peak_mem.get(device, 0) < total:
                    self._peak_mem[device] = total
                    self._peak_mem_snap[device] = dict(snapshot)
                    if total >= self.peak_total:
                        self._new_peak(total)

        def peak_by_category(self) -> dict[str, int]:
            """Bytes per category at the peak, summed over devices: parameter, buffer, gradient,
            activation, temp, optimizer, other (inputs)."""
            return self._by_category(self.get_tracker_snapshot("peak"))

        def current_by_category(self) -> dict[str, int]:
            """Bytes per category now, as ``peak_by_category`` counts them."""
            return self._by_category(self.get_tracker_snapshot("current"))

        @staticmethod
        def _by_category(snapshots: dict[Any, dict[Any, int]]) -> dict[str, int]:
            result = {ref.value.lower(): 0 for ref in _MemRefType}
            for snapshot in snapshots.values():
                for key, value in snapshot.items():
                    if isinstance(key, _MemRefType):
                        result[key.value.lower()] += value
            return result

        def peak_bytes(self) -> int:
            return sum(self._peak_mem.values())

        def current_bytes(self) -> int:
            return sum(snapshot.get(_TOTAL_KEY, 0) for snapshot in self._curr_mem_snap.values())

        def _new_peak(self, total: int) -> None:
            self.peak_total = total
            self.peak_phase = self.phase
            self.peak_saved = self.saved_live()
            self.peak_marker = self.marker()

        def note_transient(self, extra: int) -> None:
            """Bytes live for a moment inside the op that just ran, beyond what it returned (kernel workspaces)."""
            if extra <= 0 or self._frozen:
                return
            total = self.current_bytes()
            if total + extra <= self.peak_bytes():
                return
            current = self._curr_mem_snap
            device = next(iter(current), torch.device("cpu"))
            snapshot = dict(current.get(device, {}))
            snapshot[_MemRefType.TEMP] = snapshot.get(_MemRefType.TEMP, 0) + extra
            snapshot[_TOTAL_KEY] = snapshot.get(_TOTAL_KEY, 0) + extra
            self._peak_mem_snap = {**{d: dict(s) for d, s in current.items()}, device: snapshot}
            self._peak_mem = {d: s.get(_TOTAL_KEY, 0) for d, s in self._peak_mem_snap.items()}
            self._new_peak(total + extra)

        def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True) -> Any:
            # MemTracker hooks every parameter's gradient, and a frozen one (a fine-tuned base) has none to
            # hook: mark those as hooked already, with handles that remove nothing.
            for param in module.parameters():
                if not param.requires_grad and param not in self._param_to_grad_hook_handles:
                    self._param_to_grad_hook_handles[param] = (_NO_HANDLE, _NO_HANDLE)
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _pre_fw_hook(self, module: nn.Module, inputs: Any) -> None:
            try:
                super()._pre_fw_hook(module, inputs)
            except NotImplementedError:
                # A module called again from the top (each decode step of a generation): MemTracker's per-module
                # stats, which are not read here, refuse it; they start afresh for that module. The peak is kept.
                self.memory_tracking.pop(module, None)
                super()._pre_fw_hook(module, inputs)

        def set_phase(self, phase: str) -> None:
            self.phase = phase
            # A phase can start at the peak (e.g. the optimizer step before anything is freed).
            total = self.current_bytes()
            self.openings[phase] = PhaseOpening(total, self.current_by_category(), self.saved_live())
            if total > self.peak_total:
                self._new_peak(total)

else:  # pragma: no cover
    PhaseMemTracker = None  # type: ignore[assignment,misc]


class SavedTensorLedger:
    """Counts the storages autograd saves for backward, once each, and which layer saved them.

    Parameters and inputs are left out by storage (they often arrive as views).
    ``live_bytes`` follows frees, so a tracker can ask how much is held at any moment.
    """

    def __init__(self, excluded: list[torch.Tensor]) -> None:
        self._excluded = {storage_key(t) for t in excluded}
        self._seen: dict[StorageWeakRef, tuple[str, int]] = {}
        self.live_bytes = 0
        self.total_bytes = 0
        self.by_owner: dict[str, int] = {}
        self.owner_of: Callable[[], str] = lambda: ""  # set by the caller: the layer running now

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            return tensor
        storage = tensor.untyped_storage()
        key = StorageWeakRef(storage)
        if key in self._excluded or key in self._seen:
            return tensor
        size = storage.nbytes()
        owner = self.owner_of()
        self._seen[key] = (owner, size)
        self.total_bytes += size
        self.by_owner[owner] = self.by_owner.get(owner, 0) + size
        self.live_bytes += size
        weakref.finalize(storage, self._freed, size)
        return tensor

    def _freed(self, size: int) -> None:
        self.live_bytes -= size

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    @contextmanager
    def recording(self) -> Iterator[SavedTensorLedger]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
            yield self


# ---------------------------------------------------------------- profiler events


def kineto_memory_events(prof: torch.profiler.profile) -> list[tuple[int, int, str]]:
    """Every allocation (+bytes) and free (-bytes) the profiler saw: (time_ns, bytes, device_type)."""
    events = []
    for event in prof.profiler.kineto_results.events():
        if event.name() == "[memory]":
            events.append((event.start_ns(), event.nbytes(), str(event.device_type()).split(".")[-1].lower()))
    events.sort(key=lambda e: e[0])
    return events


def kineto_range(prof: torch.profiler.profile, name: str) -> tuple[int, int]:
    """Start and end (ns) of the ``record_function`` range called ``name``."""
    for event in prof.profiler.kineto_results.events():
        if event.name() == name:
            return event.start_ns(), event.end_ns()
    raise LookupError(f"no profiler range named {name!r}")


# ---------------------------------------------------------------- sharded training on fake ranks


@contextmanager
def fake_process_group(world_size: int, device_type: str = "cpu", rank: int = 0) -> Iterator[Any]:
    """A fake process group of ``world_size`` ranks (this process is ``rank``), and a 1-D device mesh over it.

    Collectives return at once without moving data: what FSDP allocates around them is
    still allocated, so a memory tracker sees it. The mesh is built outside any fake
    mode (it makes real tensors); the group is destroyed on exit.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("a process group already exists in this process; sharded estimates need their own")
    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    try:
        yield init_device_mesh(device_type, (world_size,))
    finally:
        dist.destroy_process_group()


def parallelize(module: nn.Module, mesh: Any, plan: dict[str, str]) -> nn.Module:
    """``parallelize_module`` with a Hugging Face plan's styles ("colwise", "rowwise") as PyTorch's classes; a
    column split's output stays local (each rank's heads), a row split's is all-reduced."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    return parallelize_module(module, mesh, {name: styles[style]() for name, style in plan.items()})


def pipeline_schedule(
    stage_module: nn.Module,
    stage: int,
    stages: int,
    device: torch.device,
    microbatches: int,
    example_input: torch.Tensor,
    example_output: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Any:
    """``torch.distributed.pipelining``'s 1F1B schedule of one stage, its input and output shapes given (so no
    shape inference talks to the other ranks). ``schedule.step(...)`` runs one training step of the stage."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B

    pipeline_stage = PipelineStage(
        stage_module, stage, stages, device, input_args=(example_input,), output_args=(example_output,)
    )
    return Schedule1F1B(pipeline_stage, microbatches, loss_fn=loss_fn)


def prepare_pipeline(schedule: Any, first_args: tuple[Any, ...], first_target: Any) -> None:
    """What a schedule's first step sets up before running (its receive buffers, one per micro-batch), without
    running it: ``_initialize_stage`` with the first micro-batch's arguments and target."""
    schedule._initialize_stage(first_args, {}, first_target)


def pipeline_buffers(schedule: Any) -> list[torch.Tensor]:
    """The receive buffers a stage keeps between steps: one activation buffer per micro-batch (all but the first
    stage) and one gradient buffer per micro-batch (all but the last)."""
    stage = schedule._stage
    infos = [*stage.args_recv_info.values(), *stage.grad_recv_info.values()]
    return [info.buffer for group in infos for info in group if getattr(info, "buffer", None) is not None]


def fully_shard(module: nn.Module, **kwargs: Any) -> Any:
    from torch.distributed.fsdp import fully_shard as shard

    return shard(module, **kwargs)


def fsdp_memory_tracker(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, host_kinds: frozenset[str] = frozenset()
) -> Any:
    """PyTorch's ``FSDPMemTracker`` on an FSDP2 root module (and its optimizer), keeping the whole-model peak of
    each phase (``phase`` set by the caller; ``phase_peaks``: phase -> the snapshot at its peak, by FSDP kind).

    ``host_kinds`` (offload): FSDP kinds that live in host memory, and with any of them the optimizer's step runs
    there too (its temporaries are the host's). ``phase_peaks`` are then the GPU's, taken over the GPU's own
    bytes at every op (the host's kinds left out), and ``host_peak`` the host's largest total.

    Only whole-model peaks are kept: MemTracker's per-module peaks walk every module after every op (most of its
    cost on a large model) and no estimate reads them."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY

    class PhaseFSDPMemTracker(FSDPMemTracker):
        def __init__(self) -> None:
            super().__init__(mod=model, optm=optimizer)
            self.phase = "setup"
            self.phase_peaks: dict[str, dict[str, int]] = {}
            self.host_peak = 0

        def _update_peak_stats(self, peak_state: Any) -> None:
            for device, snapshot in self._curr_mem_snap.items():
                total = snapshot[_TOTAL_KEY]
                if self._peak_mem.get(device, 0) < total:
                    self._peak_mem[device] = total
                    self._peak_mem_snap[device] = dict(snapshot)
                kinds = {getattr(key, "value", "Total"): value for key, value in snapshot.items()}
                if host_kinds:
                    on_host = host_kinds | ({"Temp"} if self.phase == "optimizer" else set())
                    host = sum(kinds.get(kind, 0) for kind in on_host)
                    self.host_peak = max(self.host_peak, host)
                    kinds = {kind: value for kind, value in kinds.items() if kind not in on_host}
                    kinds["Total"] = total - host
                best = self.phase_peaks.get(self.phase)
                if best is None or best["Total"] < kinds["Total"]:
                    self.phase_peaks[self.phase] = kinds

    return PhaseFSDPMemTracker()


class _ScalarReads(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._local_scalar_dense.default and _without_data(args[:1]):
            return False if args[0].dtype == torch.bool else 1
        return func(*args, **(kwargs or {}))


@contextmanager
def scalar_reads_as_one() -> Iterator[None]:
    """Inside, reading a fake tensor's value (``.item()``) gives 1 instead of failing: for an optimizer's step
    (Adafactor reads its step count and a norm), whose allocations do not depend on the values it reads. Never
    around a model's forward, where a value can decide what runs."""
    with _ScalarReads():
        yield
