"""cellpoint.runtime: run a cellpoint model package with onnxruntime and numpy; never imports torch.

    >>> from cellpoint.runtime import Segmenter
    >>> seg = Segmenter("objectness-nuclei")        # a bundled name or a package folder
    >>> labels, table = seg.segment(image)           # (H,W[,C]) array in; uint32 labels + columns out
"""
from cellpoint.runtime.package import ModelPackage, PackageError, list_models, load_package
from cellpoint.runtime.segmenter import Segmenter

__all__ = ["Segmenter", "ModelPackage", "PackageError", "list_models", "load_package"]
