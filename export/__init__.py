"""cellpoint.export: checkpoint → self-describing ONNX model package (needs the `train` extra)."""
