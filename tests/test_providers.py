"""Devices and execution providers: what can be checked without a GPU."""
import onnxruntime as ort
import pytest

from cellpoint.runtime.errors import DeviceError, OptionError
from cellpoint.runtime.providers import check_session_device, choose_precision, choose_providers, parse_device


def test_device_strings():
    assert parse_device("cpu") == ("cpu", 0) and parse_device("cuda:1") == ("cuda", 1)
    assert parse_device("tensorrt") == ("tensorrt", 0)
    for bad in ("gpu", "cuda:x", "cpu:1", "auto:0", ""):
        with pytest.raises(OptionError, match="device must be one of"):
            parse_device(bad)


def test_gpu_providers_carry_their_options(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers("cuda:2") == [("CUDAExecutionProvider", {"device_id": "2"}), ("CPUExecutionProvider", {})]
    assert choose_providers("auto")[0] == ("CUDAExecutionProvider", {"device_id": "0"})
    trt = choose_providers("tensorrt:1", fp16=True)
    assert [p for p, _ in trt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert trt[0][1]["device_id"] == "1" and trt[0][1]["trt_fp16_enable"] == "True"
    assert choose_precision("auto", ("fp32", "fp16", "int8"), trt) == "fp16"


def test_no_gpu_is_one_clear_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_providers("auto") == [("CPUExecutionProvider", {})]
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider"):
        choose_providers("cuda")

    class FellBack:  # a build with CUDA whose session could not start it
        def get_providers(self):
            return ["CPUExecutionProvider"]
    with pytest.raises(DeviceError, match="could not start it"):
        check_session_device(FellBack(), "cuda:0")
    assert check_session_device(FellBack(), "auto") == "CPUExecutionProvider"


def test_cli_device_cuda_on_this_machine_is_a_usage_error_or_runs_on_a_gpu(tmp_path):
    from click.testing import CliRunner
    import numpy as np
    import tifffile
    from cellpoint.runtime.cli.segment import segment
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    result = CliRunner().invoke(segment, [str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"), "--device", "cuda"])
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    assert result.exit_code == 2 and "--device" in result.output and "CUDA" in result.output


def test_io_binding_path_gives_the_outputs_of_a_plain_run():
    """The GPU path binds input and outputs; run here through a CPU session that says it is on CUDA."""
    import numpy as np
    import onnxruntime as ort
    from cellpoint.runtime.package import load_package
    from cellpoint.runtime.providers import run_session
    package = load_package("objectness-nuclei")
    session = ort.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])

    class SaysCuda:
        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(session, name)

    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    batch = np.random.default_rng(0).random((1, package.card.inputs[0].channels, 64, 64)).astype(np.float32)
    bound = run_session(SaysCuda(), name, batch, outputs)
    plain = session.run(outputs, {name: batch})
    assert len(bound) == len(plain) and all(np.array_equal(a, b) for a, b in zip(bound, plain))
