"""The TFLite wrapper on the real LiteRT interpreter: int8 in and out, fixed batches, op tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import runtime
from agent.runtime import (
    Model,
    ModelLoadError,
    RuntimeUnavailableError,
    load_interpreter,
    model_opcodes,
    runtime_name,
    runtime_version,
)
from tests.agent.model_fixture import REPO, need, tiny_models


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models(tmp_path_factory.getbasetemp())


def _load(models: Path, name: str) -> Model:
    return Model((models / f"{name}.tflite").read_bytes())


def _samples(models: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(models / "samples.npz") as data:
        return data["x"], data["y"]


def test_int8_model_takes_and_returns_float(models: Path) -> None:
    x, _ = _samples(models)
    int8 = _load(models, "cnn_int8")
    reference = _load(models, "cnn_float32")
    assert int8.input_dtype == "int8"
    assert int8.output_dtype == "int8"
    assert int8.input_quantization is not None
    assert int8.output_quantization is not None
    assert reference.input_quantization is None
    assert int8.input_shape == (16, 8, 1)
    batch = x[:50, ..., None]
    quantized = int8.predict(batch)
    floated = reference.predict(batch)
    assert quantized.dtype == np.float32
    assert quantized.shape == (50, 3)
    assert np.allclose(quantized.sum(axis=1), 1.0, atol=0.05)
    assert np.max(np.abs(quantized - floated)) < 0.1
    assert np.mean(quantized.argmax(1) == floated.argmax(1)) >= 0.95
    # dequantized outputs are whole multiples of the output scale away from the zero point
    quant = int8.output_quantization
    steps = quantized / quant.scale + quant.zero_point
    assert np.allclose(steps, np.round(steps), atol=1e-3)


def test_out_of_range_inputs_are_clipped_not_wrapped(models: Path) -> None:
    int8 = _load(models, "cnn_int8")
    quant = int8.input_quantization
    assert quant is not None
    top = (127 - quant.zero_point) * quant.scale
    bottom = (-128 - quant.zero_point) * quant.scale
    shape = (1, *int8.input_shape)
    assert np.array_equal(int8.predict(np.full(shape, 50.0)), int8.predict(np.full(shape, top)))
    assert np.array_equal(int8.predict(np.full(shape, -50.0)), int8.predict(np.full(shape, bottom)))


def test_fixed_batch_model_runs_one_window_at_a_time(models: Path) -> None:
    x, _ = _samples(models)
    for name in ("gru_float32", "gru_int8"):
        need(models, name)
        gru = _load(models, name)
        together = gru.predict(x[:5])
        apart = np.concatenate([gru.predict(x[i : i + 1]) for i in range(5)])
        assert together.shape == (5, 3)
        assert np.array_equal(together, apart)


def test_dynamic_batch_resizes(models: Path) -> None:
    x, _ = _samples(models)
    cnn = _load(models, "cnn_float32")
    big = cnn.predict(x[:7, ..., None])
    cnn.forget()  # else the two windows are answered from the first call
    small = cnn.predict(x[:2, ..., None])
    assert cnn.rows_run == 9
    assert np.allclose(big[:2], small, atol=1e-6)
    assert cnn.predict(x[:0, ..., None]).shape == (0, 3)


@pytest.mark.parametrize("name", ["cnn_int8", "cnn_float32", "gru_int8"])
def test_repeated_windows_are_answered_without_running_them_again(models: Path, name: str) -> None:
    need(models, name)
    x, _ = _samples(models)
    if name.startswith("cnn"):
        x = x[..., None]
    # a periodic network: windows repeat one after another and with a period of three
    order = [0, 0, 0, 1, 2, 3, 1, 2, 3, 1, 4, 4]
    model = _load(models, name)
    first = model.predict(x[order[:7]])
    second = model.predict(x[order[7:]])
    assert model.rows_run == 5  # windows 0 to 4, each once
    alone = _load(models, name)
    expected = np.concatenate([alone.predict(x[i : i + 1]) for i in order])
    assert np.array_equal(np.concatenate([first, second]), expected)
    assert alone.rows_run == 5


def test_remembering_nothing_runs_every_window(models: Path) -> None:
    x, _ = _samples(models)
    cnn = _load(models, "cnn_int8")
    cnn.remember = 0
    repeated = x[[0, 0, 1, 0], ..., None]
    got = cnn.predict(repeated)
    assert cnn.rows_run == 4
    assert np.array_equal(got, _load(models, "cnn_int8").predict(repeated))
    cnn.remember = runtime.RECENT_INPUTS
    cnn.predict(repeated, reuse=False)
    assert cnn.rows_run == 8


def test_the_remembered_inputs_are_bounded(models: Path) -> None:
    x, _ = _samples(models)
    need_rows = runtime.RECENT_INPUTS + 1
    assert len(x) > need_rows
    cnn = _load(models, "cnn_int8")
    cnn.predict(x[:need_rows, ..., None])
    # the oldest input was forgotten when the newest arrived: it runs again
    cnn.predict(x[:1, ..., None])
    assert cnn.rows_run == need_rows + 1
    cnn.predict(x[need_rows - 1 : need_rows, ..., None])
    assert cnn.rows_run == need_rows + 1


def test_wrong_input_shape_is_refused(models: Path) -> None:
    cnn = _load(models, "cnn_float32")
    with pytest.raises(ValueError, match="input shape"):
        cnn.predict(np.zeros((1, 8, 16, 1), np.float32))


def test_op_table_names_and_versions(models: Path) -> None:
    cnn = _load(models, "cnn_int8")
    assert {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D"} <= set(cnn.ops_used())
    assert "DELEGATE" not in cnn.ops_used()
    opcodes = model_opcodes((models / "cnn_dynamic.tflite").read_bytes())
    assert all(op.builtin and op.version >= 1 for op in opcodes)
    int8_fc = {op.name: op.version for op in model_opcodes(cnn.content)}["FULLY_CONNECTED"]
    float_table = model_opcodes((models / "cnn_float32.tflite").read_bytes())
    float_fc = {op.name: op.version for op in float_table}["FULLY_CONNECTED"]
    assert int8_fc > float_fc == 1  # int8 kernels are a newer op version than float


def test_bytes_that_are_not_a_model_are_refused(models: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a TFLite model"):
        Model(b"PK\x03\x04 certainly not a flatbuffer")
    content = (models / "cnn_float32.tflite").read_bytes()
    with pytest.raises(ModelLoadError):
        Model(content[:64])


def test_missing_runtime_names_both_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(RuntimeUnavailableError, match=r"ai-edge-litert.*tflite-runtime"):
        load_interpreter(b"\0\0\0\0TFL3")


def test_both_kernel_sets_load_and_agree_within_a_step(models: Path) -> None:
    content = (models / "cnn_int8.tflite").read_bytes()
    x, _ = _samples(models)
    batch = x[:200, ..., None]
    outputs = {}
    for kernels in ("xnnpack", "builtin"):
        _, used = load_interpreter(content, kernels=kernels)
        assert used == kernels
        runtime.use_kernels(kernels)
        try:
            model = Model(content)
        finally:
            runtime.use_kernels("auto")
        assert model.kernels == kernels
        outputs[kernels] = model.predict(batch)
    quant = Model(content).output_quantization
    assert quant is not None
    # the two round int8 differently in a few outputs, never by more than one step
    assert np.max(np.abs(outputs["xnnpack"] - outputs["builtin"])) <= quant.scale * 1.001


@pytest.mark.parametrize(
    ("builtin_s", "expected"), [(1.0, "builtin"), (1.9, "xnnpack"), (3.0, "xnnpack")]
)
def test_auto_keeps_the_faster_kernels_and_xnnpack_on_a_near_tie(
    builtin_s: float, expected: str, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CPU's real speed cannot be set from a test: the timing alone is replaced
    content = (models / "cnn_int8.tflite").read_bytes()
    monkeypatch.setattr(runtime, "_picked", {})
    seconds = {"xnnpack": 2.0, "builtin": builtin_s}
    made: dict[int, str] = {}
    real = runtime._interpreter

    def tracked(content: bytes, threads: int, kernels: str) -> object:
        interpreter = real(content, threads, kernels)
        made[id(interpreter)] = kernels
        return interpreter

    monkeypatch.setattr(runtime, "_interpreter", tracked)
    monkeypatch.setattr(runtime, "_timed_invoke", lambda it: seconds[made[id(it)]])
    assert load_interpreter(content)[1] == expected
    # the pick is remembered for this model: a second load does not time again
    monkeypatch.setattr(runtime, "_timed_invoke", lambda it: pytest.fail("timed twice"))
    assert load_interpreter(content)[1] == expected


def test_unknown_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="auto, xnnpack, builtin"):
        runtime.use_kernels("fast")


def test_runtime_identity() -> None:
    assert runtime_name() == "ai-edge-litert"
    assert runtime_version()[0].isdigit()


def test_agent_inference_runs_with_tensorflow_absent(models: Path) -> None:
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "import numpy as np\n"
        "from agent.runtime import Model\n"
        f"m = Model(open({str(models / 'cnn_int8.tflite')!r}, 'rb').read())\n"
        "print(m.predict(np.zeros((2, 16, 8, 1), np.float32)).shape)\n"
        "heavy = ('tensorflow', 'keras')\n"
        "loaded = [k for k, v in sys.modules.items() if v and k.startswith(heavy)]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 3)"
