"""The only TFLite import in the agent: LiteRT (``ai_edge_litert``), else ``tflite_runtime``.

``Model`` wraps an interpreter so callers speak float32 only: int8/uint8 inputs are quantized
with the input tensor's scale and zero point, quantized outputs are dequantized as pycoral does,
``scale * (q.astype(np.int64) - zero_point)`` (int64 "to avoid overflow"). A model exported with
a fixed batch of 1 (recurrent models: only their unrolled fixed-batch graph converts) is run
one window at a time. An input it ran a moment ago is answered from memory (``predict``).

Which kernels run an interpreter is chosen per model at load (``use_kernels``): XNNPACK, the
runtime's default delegate, or the built-in kernels alone. Which is faster depends on the CPU
(XNNPACK ran the int8 CNN 2.5x faster than the built-ins on one x86 machine here and 1.5x
slower on another), so ``auto`` times both on the model itself and keeps the faster.

``model_opcodes`` reads the operator table straight from the ``.tflite`` flatbuffer, so a model
the runtime refuses (Flex ops, an operator version it is too old for) can still be described.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import struct
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.contract import KERNELS
from agent.quiet import tflite_banner_quiet

logger = logging.getLogger(__name__)

# (module, distribution) in order of preference: LiteRT is the maintained successor of
# tflite-runtime, which has no wheels for newer Pythons.
RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)
TFLITE_IDENTIFIER = b"TFL3"
KERNEL_CHOICES = ("auto", *KERNELS)
# auto keeps XNNPACK unless the built-ins are clearly faster: both round int8 a little
# differently (one step in ~1 % of outputs), so a near tie should not flip between runs
AUTO_MARGIN = 1.25
AUTO_ROUNDS = 5  # timed invocations per kernel set, alternating, the fastest of each counts
AUTO_BUDGET_S = 0.2  # stop timing early for a slow model: start-up stays bounded
MAX_PICKED = 64
BUILTIN_CUSTOM = 32  # BuiltinOperator.CUSTOM: Flex and other non-builtin ops


class RuntimeUnavailableError(ImportError):
    """Neither LiteRT nor tflite-runtime is installed."""


class ModelLoadError(ValueError):
    """The runtime refused the model bytes (not a .tflite, unsupported op or op version)."""


@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 parameters of one tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class OpCode:
    """One entry of a model's operator table, as stored in the flatbuffer."""

    name: str
    version: int
    builtin: bool


def _without_package_init(module_name: str) -> types.ModuleType:
    """Import ``package.module`` without running the package's ``__init__``.

    LiteRT's ``__init__`` loads ``libLiteRt.so`` (~2 MB resident) for its CompiledModel API;
    the interpreter wrapper does not link it. The package stands in as a bare module only while
    its submodule imports, so a later ``import`` of the package runs the real ``__init__``.
    Any failure falls back to the ordinary import.
    """
    package = module_name.rpartition(".")[0]
    # already imported, or blocked (None): the ordinary import answers, and the fallback below
    # must not clear a block someone set
    if package in sys.modules or module_name in sys.modules:
        return importlib.import_module(module_name)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"no package {package}")
    bare = types.ModuleType(package)
    bare.__path__ = list(spec.submodule_search_locations)
    bare.__spec__ = spec
    sys.modules[package] = bare
    try:
        return importlib.import_module(module_name)
    except Exception:
        for name in [n for n in sys.modules if n.startswith(package + ".")]:
            del sys.modules[name]
        sys.modules.pop(package, None)
        return importlib.import_module(module_name)
    finally:
        if sys.modules.get(package) is bare:
            del sys.modules[package]


def _interpreter_class() -> tuple[Any, str]:
    """The first available Interpreter class and the distribution it came from."""
    for module_name, distribution in RUNTIMES:
        try:
            if module_name == "ai_edge_litert.interpreter":
                module = _without_package_init(module_name)
            else:
                module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, distribution
    raise RuntimeUnavailableError(
        "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert) "
        "or tflite-runtime (pip install tflite-runtime)"
    )


def runtime_name() -> str:
    """Distribution name of the runtime in use: ``ai-edge-litert`` or ``tflite-runtime``."""
    return _interpreter_class()[1]


def runtime_version() -> str:
    """Installed version of the runtime in use."""
    import importlib.metadata  # only here: it pulls in email and zipfile parsing (~1 MB)

    return importlib.metadata.version(runtime_name())


_kernels = "auto"
# auto's pick per model in this process: a model loaded twice (a replay after a check, a model
# pushed again) runs on the same kernels, so its outputs do not move by a rounding step
_picked: dict[tuple[int, int], str] = {}


def use_kernels(choice: str) -> None:
    """Kernels for the models loaded from now on: ``auto``, ``xnnpack`` or ``builtin``."""
    global _kernels
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, got {choice!r}")
    _kernels = choice


def _builtin_resolver(interpreter_class: Any) -> Any:
    """The runtime's "built-in kernels, no default delegate" resolver, None when it has none."""
    module = sys.modules.get(interpreter_class.__module__)
    resolvers = getattr(module, "OpResolverType", None)
    return getattr(resolvers, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)


def _interpreter(model_content: bytes, num_threads: int, kernels: str) -> Any:
    """One allocated interpreter with the given kernels; ModelLoadError when it is refused."""
    interpreter_class, distribution = _interpreter_class()
    options: dict[str, Any] = {}
    if kernels == "builtin":
        options["experimental_op_resolver_type"] = _builtin_resolver(interpreter_class)
    try:
        with tflite_banner_quiet():
            interpreter = interpreter_class(
                model_content=model_content, num_threads=num_threads, **options
            )
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{distribution} cannot load the model: {reason}") from exc
    return interpreter


def _timed_invoke(interpreter: Any) -> float:
    """Seconds of one invocation on an all-zero input (the interpreter is warm afterwards)."""
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    began = time.perf_counter()
    interpreter.invoke()
    return time.perf_counter() - began


def _pick(candidates: dict[str, Any]) -> str:
    """The kernel set that runs this model fastest here, XNNPACK on a near tie."""
    best = {name: math.inf for name in candidates}
    for interpreter in candidates.values():
        _timed_invoke(interpreter)  # warm-up: XNNPACK packs its weights on the first call
    deadline = time.perf_counter() + AUTO_BUDGET_S
    for _ in range(AUTO_ROUNDS):
        for name, interpreter in candidates.items():
            best[name] = min(best[name], _timed_invoke(interpreter))
        if time.perf_counter() > deadline:
            break
    if best["builtin"] * AUTO_MARGIN < best["xnnpack"]:
        return "builtin"
    return "xnnpack"


def load_interpreter(
    model_content: bytes, num_threads: int = 1, kernels: str | None = None
) -> tuple[Any, str]:
    """An allocated interpreter for ``model_content`` and the kernels it runs on.

    ModelLoadError when the runtime refuses the model. ``kernels`` defaults to ``use_kernels``'
    choice; a runtime without a built-in-only resolver always runs its default (``xnnpack``).
    """
    if model_content[4:8] != TFLITE_IDENTIFIER:
        raise ModelLoadError("not a TFLite model (no TFL3 identifier)")
    choice = kernels or _kernels
    if _builtin_resolver(_interpreter_class()[0]) is None:
        choice = "xnnpack"
    key = (len(model_content), hash(model_content))
    choice = _picked.get(key, choice) if choice == "auto" else choice
    if choice != "auto":
        return _interpreter(model_content, num_threads, choice), choice
    candidates = {name: _interpreter(model_content, num_threads, name) for name in KERNELS}
    try:
        chosen = _pick(candidates)
    except (ValueError, RuntimeError):
        chosen = "xnnpack"  # a model that cannot run on zeros is judged later, on real input
    if len(_picked) >= MAX_PICKED:
        _picked.clear()  # many different models pushed: forget, the next loads time again
    _picked[key] = chosen
    return candidates[chosen], chosen


def _quantization(detail: dict[str, Any]) -> Quantization | None:
    """Scale and zero point of an integer tensor, None for float tensors."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    scale, zero_point = detail["quantization"]
    return Quantization(float(scale), int(zero_point))


# Inputs whose outputs a model remembers (a window of 16 x 52 int8 is 832 bytes: ~53 KiB);
# periodic traffic repeats with the period of its slowest sensor, rarely over a minute.
RECENT_INPUTS = 64


class _RecentInputs:
    """The last inputs a model ran and their outputs, in two arrays allocated once.

    A ring: the oldest input gives way to the newest. Looked up by the hash of the input's
    bytes and confirmed byte for byte, so an answer is only ever the model's own for that
    input. Two arrays allocated once, so what it holds is fixed (~53 KiB for a 16 x 52 int8
    window) whatever runs through it.
    """

    def __init__(
        self, size: int, row: tuple[int, ...], dtype: np.dtype[Any], output: tuple[int, ...]
    ) -> None:
        self.inputs = np.zeros((size, *row), dtype)
        self.outputs = np.zeros((size, *output), np.float32)
        self._slot_of: dict[int, int] = {}
        self._hash_at: list[int | None] = [None] * size
        self._next = 0

    def find(self, key: bytes) -> int | None:
        """The slot holding the input whose bytes are ``key``, or None."""
        slot = self._slot_of.get(hash(key))
        if slot is not None and self.inputs[slot].tobytes() == key:
            return slot
        return None

    def add(self, key: bytes, row: npt.NDArray[Any], output: npt.NDArray[np.float32]) -> None:
        """Remember ``row`` (whose bytes are ``key``) and its output, in the oldest slot."""
        slot = self._next
        old = self._hash_at[slot]
        if old is not None and self._slot_of.get(old) == slot:
            del self._slot_of[old]
        self.inputs[slot] = row
        self.outputs[slot] = output
        self._slot_of[hash(key)] = slot
        self._hash_at[slot] = hash(key)
        self._next = (slot + 1) % len(self.outputs)


class Model:
    """A TFLite model that takes and returns float32, whatever its tensors' types."""

    def __init__(self, model_content: bytes, num_threads: int = 1) -> None:
        self.content = model_content
        self._interpreter, self.kernels = load_interpreter(model_content, num_threads)
        self._lock = threading.Lock()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        signature = self._input.get("shape_signature", self._input["shape"])
        self._fixed_batch = int(signature[0]) > 0
        self._batch = int(self._input["shape"][0])
        # read once: the interpreter's tensor details are rebuilt on every call
        self._input_quant = _quantization(self._input)
        self._output_quant = _quantization(self._output)
        self._recent: _RecentInputs | None = None
        self.remember = RECENT_INPUTS
        self.rows_run = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, without the batch dimension."""
        return tuple(int(d) for d in self._input["shape"][1:])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output sample, without the batch dimension."""
        return tuple(int(d) for d in self._output["shape"][1:])

    @property
    def input_dtype(self) -> str:
        """Input tensor dtype name: ``float32``, ``int8`` ..."""
        return str(np.dtype(self._input["dtype"]).name)

    @property
    def output_dtype(self) -> str:
        """Output tensor dtype name."""
        return str(np.dtype(self._output["dtype"]).name)

    @property
    def input_quantization(self) -> Quantization | None:
        """Input scale / zero point for integer inputs, None for float."""
        return _quantization(self._input)

    @property
    def output_quantization(self) -> Quantization | None:
        """Output scale / zero point for integer outputs, None for float."""
        return _quantization(self._output)

    def predict(
        self, x: npt.NDArray[np.floating[Any]], *, reuse: bool = True
    ) -> npt.NDArray[np.float32]:
        """Run a batch of scaled inputs (N, *input_shape); returns float32 (N, *output_shape).

        A window whose input tensor is one of the last ``remember`` run (``RECENT_INPUTS``)
        gets that output without running the interpreter again: a periodic IoT network's quiet
        seconds (every second, or every sensor period) and a uniform flood's steps repeat
        exactly once quantized, and what the interpreter gave for an input is known exactly.
        ``rows_run`` counts the rows it ran; ``reuse=False`` (or ``remember`` 0) runs every
        row: a latency measurement times the interpreter, and a benchmark its worst case, a
        stream whose windows never repeat.
        """
        batch = np.asarray(x, dtype=np.float32)
        if batch.shape[1:] != self.input_shape:
            raise ValueError(f"input shape {batch.shape[1:]} != model input {self.input_shape}")
        if len(batch) == 0:
            return np.zeros((0, *self.output_shape), dtype=np.float32)
        with self._lock:
            tensor = self._to_input(batch)
            if not reuse or self.remember <= 0:
                self.rows_run += len(tensor)
                return self._run(tensor)
            return self._predict_remembering(tensor)

    def _predict_remembering(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``predict`` for quantized rows, running only those not among the recent inputs."""
        recent = self._recent_inputs(tensor)
        keys = [row.tobytes() for row in tensor]  # temporaries: a key is kept as its hash
        kept = np.full(len(keys), -1)  # the slot of a remembered input, -1: run it
        ran: dict[bytes, int] = {}  # an input run in this call -> its row in the run
        for i, key in enumerate(keys):
            slot = recent.find(key)
            if slot is not None:
                kept[i] = slot
            elif key not in ran:
                ran[key] = i
        out = self._run(tensor[list(ran.values())])
        self.rows_run += len(ran)
        result = np.empty((len(keys), *self.output_shape), np.float32)
        result[kept >= 0] = recent.outputs[kept[kept >= 0]]
        run_row = {key: j for j, key in enumerate(ran)}
        unkept = np.flatnonzero(kept < 0)
        result[unkept] = out[[run_row[keys[i]] for i in unkept]]
        for key, j in run_row.items():
            recent.add(key, tensor[ran[key]], out[j])
        return result

    def _recent_inputs(self, tensor: npt.NDArray[Any]) -> _RecentInputs:
        """The memory of recent inputs, sized to ``remember`` (made again when it changed)."""
        if self._recent is None or len(self._recent.outputs) != self.remember:
            self._recent = _RecentInputs(
                self.remember, tensor.shape[1:], tensor.dtype, self.output_shape
            )
        return self._recent

    def forget(self) -> None:
        """Drop the remembered outputs (a benchmark replaying one file again starts cold)."""
        with self._lock:
            self._recent = None

    def _run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Invoke on rows already in the input tensor's type; fixed-batch models row by row.

        Other models in power-of-two parts (21 rows: 16, 4 and 1): the interpreter re-plans
        its memory for every new batch size, and with any count of fresh windows (1 to 32)
        the agent's peak RSS on a looping replay was 1-3 MB higher than with these six sizes.
        """
        if len(tensor) == 0:
            return np.zeros((0, *self.output_shape), dtype=np.float32)
        if self._fixed_batch:
            parts = [self._invoke(tensor[i : i + self._batch]) for i in range(len(tensor))]
            return np.concatenate(parts, axis=0)
        parts, first = [], 0
        while first < len(tensor):
            size = 1 << ((len(tensor) - first).bit_length() - 1)
            parts.append(self._invoke_batch(tensor[first : first + size]))
            first += size
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _invoke_batch(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Invoke on any number of rows, resizing the input tensor to it when it differs."""
        if self._batch != len(tensor):
            self._interpreter.resize_tensor_input(self._input["index"], tensor.shape)
            self._interpreter.allocate_tensors()
            self._batch = len(tensor)
            self._output = self._interpreter.get_output_details()[0]
        return self._invoke(tensor)

    def _invoke(self, tensor: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Invoke, dequantize one batch that already fits the input tensor."""
        self._interpreter.set_tensor(self._input["index"], tensor)
        self._interpreter.invoke()
        raw = np.asarray(self._interpreter.get_tensor(self._output["index"]))
        quant = self._output_quant
        if quant is None:
            return raw.astype(np.float32)
        return (quant.scale * (raw.astype(np.int64) - quant.zero_point)).astype(np.float32)

    def _to_input(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        """The input tensor's representation of a float batch (rounded and clipped when int)."""
        dtype = np.dtype(self._input["dtype"])
        quant = self._input_quant
        if quant is None:
            return batch.astype(dtype)
        info = np.iinfo(dtype)
        q = batch / np.float32(quant.scale)  # one temporary, rounded and clipped in place
        q += quant.zero_point
        np.rint(q, out=q)
        np.clip(q, info.min, info.max, out=q)
        return q.astype(dtype)

    def ops_used(self) -> list[str]:
        """Sorted names of the operators in the model's operator table.

        Read from the flatbuffer rather than ``_get_ops_details()``: once XNNPACK has taken
        over part of the graph, the interpreter lists those nodes as ``DELEGATE``.
        """
        return sorted({op.name for op in model_opcodes(self.content)})


def model_opcodes(model_content: bytes) -> list[OpCode]:
    """The operator table of a ``.tflite`` flatbuffer (names, versions, builtin or custom)."""
    if model_content[4:8] != TFLITE_IDENTIFIER:
        raise ModelLoadError("not a TFLite model (no TFL3 identifier)")
    try:
        reader = _FlatBuffer(model_content)
        model = reader.root()
        opcodes = []
        for table in reader.tables(model, 1):  # Model.operator_codes
            deprecated = reader.scalar(table, 0, "b", 0)
            code = max(deprecated, reader.scalar(table, 3, "i", 0))
            version = reader.scalar(table, 2, "i", 1)
            if code == BUILTIN_CUSTOM:
                custom = reader.string(table, 1) or "CUSTOM"
                opcodes.append(OpCode(custom, version, builtin=False))
            else:
                opcodes.append(OpCode(_builtin_name(code), version, builtin=True))
    except (struct.error, IndexError) as exc:
        raise ModelLoadError("corrupt TFLite flatbuffer") from exc
    return opcodes


def _builtin_name(code: int) -> str:
    """Operator name for a builtin code, from the runtime's schema when it ships one."""
    return _builtin_names().get(code, f"BUILTIN_{code}")


@functools.cache
def _builtin_names() -> dict[int, str]:
    """Builtin code -> name from LiteRT's generated schema; empty when it is not installed."""
    try:
        schema = importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError:
        return {}
    enum = vars(schema.BuiltinOperator)
    return {v: k for k, v in enum.items() if isinstance(v, int) and not k.startswith("_")}


class _FlatBuffer:
    """Just enough of the FlatBuffers wire format to read the TFLite operator table."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _u32(self, pos: int) -> int:
        value: int = struct.unpack_from("<I", self.data, pos)[0]
        return value

    def root(self) -> int:
        return self._u32(0)

    def _field(self, table: int, index: int) -> int:
        """Absolute position of field ``index`` of ``table``, 0 when absent."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_len = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * index
        if slot >= vtable_len:
            return 0
        offset: int = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + offset if offset else 0

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self._field(table, index)
        if not pos:
            return default
        value: int = struct.unpack_from("<" + fmt, self.data, pos)[0]
        return value

    def string(self, table: int, index: int) -> str | None:
        pos = self._field(table, index)
        if not pos:
            return None
        start = pos + self._u32(pos)
        length = self._u32(start)
        return self.data[start + 4 : start + 4 + length].decode("utf-8", "replace")

    def tables(self, table: int, index: int) -> list[int]:
        pos = self._field(table, index)
        if not pos:
            return []
        vector = pos + self._u32(pos)
        count = self._u32(vector)
        return [vector + 4 + 4 * i + self._u32(vector + 4 + 4 * i) for i in range(count)]
