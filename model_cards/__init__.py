"""Bundled model packages: one folder each (model.onnx, card.json, README.md, sample input and output)."""
