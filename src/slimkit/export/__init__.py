"""Export: ONNX files (weights embedded) and an ONNX Runtime runner that measures like a module."""

from slimkit.export.onnx import OnnxModel, check_parity, export_onnx, onnx_bytes

__all__ = ["OnnxModel", "check_parity", "export_onnx", "onnx_bytes"]
