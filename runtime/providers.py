"""Choosing onnxruntime execution providers."""
from __future__ import annotations

import onnxruntime as ort

from cellpoint.runtime.errors import DeviceError, OptionError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "int8", "fp16")


def choose_providers(device: str = "auto") -> list[str]:
    """device "auto": TensorRT/CUDA when this onnxruntime build has them, else CPU; "cuda": fail if absent.

    Returns the provider list for InferenceSession (CPU always last, as the fallback)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [p for p in ("CUDAExecutionProvider",) if p in available]
    if device == "cuda" and not gpu:
        raise DeviceError("device='cuda' asked for, but this onnxruntime has no CUDA provider "
                           f"(available: {', '.join(available)}); pip install 'cellpoint[gpu]'")
    return gpu + ["CPUExecutionProvider"]


def choose_precision(precision: str, shipped: tuple[str, ...], providers: list[str]) -> str:
    """The main graph's precision to run: `precision` itself when it is "fp32", "int8" or "fp16"; "auto":
    "fp16" when the first provider is a GPU's and the package ships it, "int8" on the CPU when the package
    ships it, else "fp32". shipped: the package's precisions ("fp32" and its variants). Raises OptionError
    for a precision that is none of PRECISIONS (whether the package ships it is the package's check)."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    preferred = "int8" if providers[0] == "CPUExecutionProvider" else "fp16"
    return preferred if preferred in shipped else "fp32"
