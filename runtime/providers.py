"""Choosing onnxruntime execution providers."""
from __future__ import annotations

import onnxruntime as ort

from cellpoint.runtime.errors import DeviceError, OptionError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
"""Device kinds; "cuda" and "tensorrt" take a GPU index, e.g. "cuda:1" (default 0)."""
GPU_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
PRECISIONS = ("auto", "fp32", "int8", "fp16")

Provider = tuple[str, dict[str, str]]


def parse_device(device: str) -> tuple[str, int]:
    """"cuda:1" → ("cuda", 1); "cpu" → ("cpu", 0). Raises OptionError for anything else."""
    kind, _, index = str(device).partition(":")
    if kind not in DEVICES or (index and (kind in ("auto", "cpu") or not index.isdigit())):
        raise OptionError(f"device must be one of auto, cpu, cuda[:N], tensorrt[:N] (N a GPU index), got {device!r}")
    return kind, int(index or 0)


def choose_providers(device: str = "auto", fp16: bool = False) -> list[Provider]:
    """onnxruntime providers with their options for `device` (see DEVICES), CPU always last as the
    fallback of operators a GPU provider lacks:
    - "cpu": the CPU only; "auto": CUDA (GPU 0) when this onnxruntime build has it, else the CPU;
    - "cuda[:N]": CUDA on GPU N (DeviceError if the build has no CUDA provider);
    - "tensorrt[:N]": TensorRT on GPU N with its engine cache in the user's cache folder, fp16 kernels when
      `fp16` (the package's fp16 variant runs), CUDA for what TensorRT does not take, then the CPU.
    Returns [(provider name, options)]."""
    kind, index = parse_device(device)
    available = ort.get_available_providers()
    cpu: Provider = ("CPUExecutionProvider", {})
    if kind == "cpu" or (kind == "auto" and GPU_PROVIDERS["cuda"] not in available):
        return [cpu]
    if kind == "auto":
        kind = "cuda"
    needed = [GPU_PROVIDERS[kind]] + ([GPU_PROVIDERS["cuda"]] if kind == "tensorrt" else [])
    missing = [p for p in needed if p not in available]
    if missing:
        raise DeviceError(f"device {device!r} asked for, but this onnxruntime has no {', '.join(missing)} "
                          f"(available: {', '.join(available)}); pip install 'cellpoint[gpu]'")
    cuda: Provider = (GPU_PROVIDERS["cuda"], {"device_id": str(index)})
    if kind == "cuda":
        return [cuda, cpu]
    from pathlib import Path
    cache = Path.home() / ".cache" / "cellpoint" / "tensorrt"
    trt: Provider = (GPU_PROVIDERS["tensorrt"], {"device_id": str(index), "trt_engine_cache_enable": "True",
                                                 "trt_engine_cache_path": str(cache),
                                                 "trt_fp16_enable": "True" if fp16 else "False"})
    return [trt, cuda, cpu]


def check_session_device(session, device: str) -> str:
    """The provider `session` runs on; DeviceError when a GPU was asked for ("cuda", "tensorrt") and the
    session fell back to the CPU (a provider present in the build but no usable GPU or driver)."""
    running = session.get_providers()[0]
    kind, _ = parse_device(device)
    if kind in GPU_PROVIDERS and running == "CPUExecutionProvider":
        raise DeviceError(f"device {device!r} asked for, but onnxruntime could not start it (no usable GPU, "
                          "driver or CUDA libraries) and would run on the CPU; use --device cpu or auto")
    return running


def provider_names(providers: list) -> list[str]:
    """The names of a provider list of names or (name, options) pairs."""
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def choose_precision(precision: str, shipped: tuple[str, ...], providers: list[str]) -> str:
    """The main graph's precision to run: `precision` itself when it is "fp32", "int8" or "fp16"; "auto":
    "fp16" when the first provider is a GPU's and the package ships it, "int8" on the CPU when the package
    ships it, else "fp32". shipped: the package's precisions ("fp32" and its variants). Raises OptionError
    for a precision that is none of PRECISIONS (whether the package ships it is the package's check)."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    preferred = "int8" if provider_names(providers)[0] == "CPUExecutionProvider" else "fp16"
    return preferred if preferred in shipped else "fp32"


def run_session(session, input_name: str, batch, output_names: list[str]) -> list:
    """Run `session` on one input → its outputs (numpy, in `output_names` order). On a GPU provider the
    input and outputs go through IO binding: the batch is copied to the device once and the outputs come
    back into onnxruntime-allocated host memory, without the extra staging copies of `session.run`; on the
    CPU it is `session.run`."""
    if session.get_providers()[0] == "CPUExecutionProvider":
        return session.run(output_names, {input_name: batch})
    binding = session.io_binding()
    binding.bind_cpu_input(input_name, batch)
    for name in output_names:
        binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
