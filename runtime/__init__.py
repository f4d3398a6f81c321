"""cellpoint.runtime: run a cellpoint model package with onnxruntime and numpy; never imports torch.

    >>> from cellpoint.runtime import Segmenter
    >>> with Segmenter("objectness-nuclei") as seg:      # a bundled name or a package folder
    ...     labels, table = seg.segment(image)           # (H,W[,C]) array in; uint32 labels + columns out
"""
from importlib import metadata as _metadata

from cellpoint.runtime.errors import CellpointError, DeviceError, ImageError, PackageError
from cellpoint.runtime.package import ModelPackage, list_models, load_package
from cellpoint.runtime.segmenter import SegmentationResult, Segmenter

try:
    __version__ = _metadata.version("cellpoint")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Segmenter", "SegmentationResult", "ModelPackage", "CellpointError", "PackageError", "ImageError",
           "DeviceError", "list_models", "load_package", "__version__"]
