"""Choosing onnxruntime execution providers."""
from __future__ import annotations

import onnxruntime as ort

from cellpoint.runtime.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")


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
