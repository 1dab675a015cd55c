"""CPU shim: lets megatron-core's real training path run on a machine without CUDA.

megatron-core assumes CUDA in a few dozen places (``device="cuda"``, ``torch.cuda.*`` calls,
``Tensor.type() == "torch.cuda.FloatTensor"``). When CUDA is absent, ``install_cpu_shim()``:

- enters a ``TorchFunctionMode`` (in this thread and every thread started later) that rewrites
  CUDA devices (``"cuda"``, ``"cuda:N"``, ``torch.device("cuda")``, bare ints) to CPU in
  ``device=`` arguments and in ``Tensor.to``, and makes ``Tensor.cuda()``/``pin_memory()``
  return the tensor itself;
- replaces the ``torch.cuda`` functions megatron calls with CPU stand-ins (streams, events,
  device queries, memory stats, nvtx ranges);
- maps the "CUDA" RNG onto the CPU default generator, so megatron's RNG tracker ``fork()``
  really switches streams (on a CPU build ``torch.cuda.manual_seed`` is silently a no-op);
- makes ``Tensor.type()`` return a string that compares equal to both the CPU and the CUDA
  type name (``"torch.FloatTensor" == "torch.cuda.FloatTensor"``), so megatron's type-string
  checks pass without inspecting who the caller is;
- wraps every other public ``torch.cuda`` function so that a call is recorded;
- runs the autograd engine under the mode, so recomputation in backward is shimmed too.

Every CUDA site hit is counted per megatron source line (``cuda_site_census()``);
``unknown_cuda_sites()`` lists hits outside ``KNOWN_CUDA_SITES`` (the canary a test checks).
The shim is process-global and cannot be undone; spawned processes must install it themselves.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from megatron_telecom.runtime._cuda_sites import KNOWN_CUDA_SITES

__all__ = [
    "KNOWN_CUDA_SITES",
    "cuda_site_census",
    "install_cpu_shim",
    "is_cpu_shim_installed",
    "reset_cuda_site_census",
    "unknown_cuda_sites",
]

_CPU = torch.device("cpu")
_NON_MEGATRON = "<non-megatron>"
# torch.cuda functions that answer correctly on a CPU build and need neither stand-in nor census.
_SAFE_CUDA_QUERIES = frozenset({"is_available", "is_initialized", "is_current_stream_capturing"})

_installed = False
_census: Counter[str] = Counter()
_census_lock = threading.Lock()


def _megatron_site() -> str:
    """Return ``megatron/...py:LINE`` of the innermost megatron frame on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        if "/megatron/" in filename:
            return "megatron/" + filename.rsplit("/megatron/", 1)[1] + f":{frame.f_lineno}"
        frame = frame.f_back
    return _NON_MEGATRON


def _record(kind: str) -> None:
    with _census_lock:
        _census[f"{_megatron_site()} {kind}"] += 1


def cuda_site_census() -> dict[str, int]:
    """Hits per ``"<megatron file:line> <kind>"`` since install or the last reset."""
    with _census_lock:
        return dict(sorted(_census.items()))


def reset_cuda_site_census() -> None:
    """Forget the hits counted so far (e.g. before the section a test checks)."""
    with _census_lock:
        _census.clear()


def unknown_cuda_sites() -> list[str]:
    """Census entries at megatron sites the shim was not validated against (the canary)."""
    unknown = []
    for key in cuda_site_census():
        site = key.split(" ", 1)[0]
        if site != _NON_MEGATRON and site not in KNOWN_CUDA_SITES:
            unknown.append(key)
    return unknown


def is_cpu_shim_installed() -> bool:
    """True once ``install_cpu_shim()`` has installed the shim in this process."""
    return _installed


# --------------------------------------------------------------------------- device rewrites
def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device == "cuda" or device.startswith("cuda:")
    # torch reads a bare int device as a CUDA ordinal.
    return isinstance(device, int) and not isinstance(device, bool)


class _DeviceAgnosticTypeName(str):
    """A ``Tensor.type()`` result equal to its CPU and its CUDA spelling.

    ``"torch.FloatTensor"`` compares equal to ``"torch.cuda.FloatTensor"``; being a ``str``
    subclass that overrides ``__eq__``, it wins on either side of ``==`` and in ``in [...]``.
    Hashing follows the CPU name, so dict/set lookups by the CUDA name do not match.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str.__eq__(_cpu_type_name(self), _cpu_type_name(other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = str.__hash__


def _cpu_type_name(name: str) -> str:
    return "torch." + name[len("torch.cuda.") :] if name.startswith("torch.cuda.") else name


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to CPU for every torch call made under it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        if device is not None and _is_cuda_device(device):
            kwargs = {**kwargs, "device": _CPU}
            _record(f"device={device!r} in {getattr(func, '__name__', func)}")
        if func is torch.Tensor.to and len(args) >= 2 and _is_cuda_device(args[1]):
            _record(f"Tensor.to({args[1]!r})")
            args = (args[0], _CPU, *args[2:])
        elif func is torch.Tensor.cuda or func is torch.Tensor.pin_memory:
            _record(f"Tensor.{func.__name__}()")
            return args[0]
        elif func is torch.Tensor.record_stream:
            _record("Tensor.record_stream()")
            return None
        elif func is torch.Tensor.type and len(args) == 1 and not kwargs:
            result = func(*args)
            if result.startswith("torch.") and not result.startswith("torch.cuda."):
                _record("Tensor.type()")
                return _DeviceAgnosticTypeName(result)
            return result
        return func(*args, **kwargs)


def _mode_is_active() -> bool:
    from torch.overrides import _get_current_function_mode_stack

    return any(isinstance(mode, _CudaToCpuMode) for mode in _get_current_function_mode_stack())


def _run_backward_under_mode() -> None:
    """Make the autograd engine run backward (and activation recomputation) under the mode.

    ``loss.backward()`` and ``torch.autograd.backward`` are dispatched to the mode's handler,
    during which torch pops the mode; the engine snapshots that mode stack for the backward
    pass, so recomputed forwards would run unshimmed. Wrapping the engine entry restores it.
    """
    from torch import autograd
    from torch.autograd import graph

    original = graph._engine_run_backward

    def engine_run_backward(*args: Any, **kwargs: Any) -> Any:
        if _mode_is_active():
            return original(*args, **kwargs)
        with _CudaToCpuMode():
            return original(*args, **kwargs)

    graph._engine_run_backward = engine_run_backward
    autograd._engine_run_backward = engine_run_backward


def _enter_mode_in_new_threads() -> None:
    """Function modes are per thread: make every thread started later run under the mode."""
    original_run = threading.Thread.run

    def run_under_mode(self: threading.Thread) -> None:
        with _CudaToCpuMode():
            original_run(self)

    threading.Thread.run = run_under_mode  # type: ignore[method-assign]


# --------------------------------------------------------------------------- torch.cuda stand-ins
class _CpuStream:
    """Stand-in for torch.cuda.Stream: work on CPU is already ordered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.device = _CPU
        self.cuda_stream = 0

    def wait_stream(self, *args: Any, **kwargs: Any) -> None:
        return None

    def wait_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record_event(self, event: _CpuEvent | None = None) -> _CpuEvent:
        event = event if event is not None else _CpuEvent()
        event.record()
        return event

    def synchronize(self) -> None:
        return None

    def query(self) -> bool:
        return True

    def __enter__(self) -> _CpuStream:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


class _CpuEvent:
    """Stand-in for torch.cuda.Event; elapsed_time() measures wall time in ms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._time: float | None = None

    def record(self, *args: Any, **kwargs: Any) -> None:
        self._time = time.perf_counter()

    def wait(self, *args: Any, **kwargs: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def query(self) -> bool:
        return True

    def elapsed_time(self, end: _CpuEvent) -> float:
        if self._time is None or end._time is None:
            raise RuntimeError("elapsed_time() needs both events recorded")
        return (end._time - self._time) * 1000.0


_DEFAULT_STREAM = _CpuStream()


def _null_context(*args: Any, **kwargs: Any) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _returning(value: Any) -> Callable[..., Any]:
    return lambda *args, **kwargs: value


def _device_standins() -> dict[str, Any]:
    return {
        "current_device": _returning(0),
        "set_device": _returning(None),
        "device_count": _returning(1),
        "synchronize": _returning(None),
        "empty_cache": _returning(None),
        "current_stream": _returning(_DEFAULT_STREAM),
        "default_stream": _returning(_DEFAULT_STREAM),
        "set_stream": _returning(None),
        "stream": _null_context,
        "device": _null_context,
        "memory_allocated": _returning(0),
        "max_memory_allocated": _returning(0),
        "memory_reserved": _returning(0),
        "max_memory_reserved": _returning(0),
        "memory_stats": lambda *args, **kwargs: {},
        "reset_peak_memory_stats": _returning(None),
        "get_device_capability": _returning((0, 0)),
        "get_device_name": _returning("cpu (megatron_telecom shim)"),
    }


def _rng_standins() -> dict[str, Callable[..., Any]]:
    """The "CUDA" generator is the CPU default generator."""

    def get_rng_state(device: Any = "cuda") -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(new_state: torch.Tensor, device: Any = "cuda") -> None:
        torch.set_rng_state(new_state)

    def manual_seed(seed: int) -> None:
        torch.default_generator.manual_seed(int(seed))

    return {
        "get_rng_state": get_rng_state,
        "set_rng_state": set_rng_state,
        "manual_seed": manual_seed,
        "manual_seed_all": manual_seed,
        "get_rng_state_all": lambda: [torch.get_rng_state()],
        "set_rng_state_all": lambda states: torch.set_rng_state(states[0]),
        "seed": lambda: torch.seed(),
        "seed_all": lambda: torch.seed(),
        "initial_seed": lambda: torch.initial_seed(),
    }


def _recorded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _record(f"torch.cuda.{name}")
        return fn(*args, **kwargs)

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.__doc__ = f"megatron_telecom CPU shim for torch.cuda.{name}."
    return wrapper


def _install_cuda_standins() -> None:
    cuda = torch.cuda
    # Census every other public torch.cuda function megatron may call (behaviour unchanged).
    for name, obj in list(vars(cuda).items()):
        if name.startswith("_") or name in _SAFE_CUDA_QUERIES or not inspect.isfunction(obj):
            continue
        setattr(cuda, name, _recorded(f"{name} (not shimmed)", obj))
    for name, fn in _device_standins().items():
        setattr(cuda, name, _recorded(name, fn))
    cuda.Stream = _CpuStream
    cuda.ExternalStream = _CpuStream
    cuda.Event = _CpuEvent
    for name, fn in _rng_standins().items():
        setattr(cuda, name, _recorded(name, fn))
        setattr(cuda.random, name, _recorded(f"random.{name}", fn))
    cuda.default_generators = (torch.default_generator,)
    cuda._lazy_call = _recorded("_lazy_call", lambda callback, **kwargs: callback())
    cuda._lazy_init = _returning(None)
    cuda.nvtx.range_push = _returning(0)
    cuda.nvtx.range_pop = _returning(0)
    cuda.nvtx.range = _null_context
    cuda.nvtx.mark = _returning(None)


def _patch_megatron_import_time_bindings() -> None:
    """megatron's tensor_parallel.random binds torch.cuda names when imported: rebind them."""
    module = sys.modules.get("megatron.core.tensor_parallel.random")
    if module is not None:
        module._lazy_call = torch.cuda._lazy_call
        module._lazy_init = torch.cuda._lazy_init
        module.device_ctx_manager = torch.cuda.device


def install_cpu_shim(*, force: bool = False) -> bool:
    """Install the shim when CUDA is absent (or ``force``); idempotent.

    Returns True when the shim is active, False when CUDA is present and nothing was done.
    Call before importing megatron if possible; modules already imported are patched too.
    """
    global _installed
    if _installed:
        return True
    if torch.cuda.is_available() and not force:
        return False
    _install_cuda_standins()
    _patch_megatron_import_time_bindings()
    _CudaToCpuMode().__enter__()  # stays entered for the life of the main thread
    _enter_mode_in_new_threads()
    _run_backward_under_mode()
    _installed = True
    return True
