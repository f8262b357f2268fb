"""Export: ONNX files (weights embedded) and an ONNX Runtime runner that measures like a module;
AOTInductor `.pt2` packages and their runner."""

from slimkit.export.aoti import AotiModel, aoti_unavailable, export_aoti
from slimkit.export.onnx import OnnxModel, check_parity, export_onnx, onnx_bytes

__all__ = [
    "AotiModel",
    "OnnxModel",
    "aoti_unavailable",
    "check_parity",
    "export_aoti",
    "export_onnx",
    "onnx_bytes",
]
