"""Quantization on real runtimes: static int8 (PTQ and QAT) on torch's int8 kernels through
torchao PT2E + inductor, int8 QDQ and dynamic int8 for ONNX Runtime, k-bit / binary / ternary
weights stored bit-packed, and fp16/bf16 weights."""

from slimkit.quant.int8 import (
    Int8Config,
    Int8Model,
    QATModel,
    convert_qat,
    load_int8,
    prepare_qat,
    quantize_int8,
    save_int8,
)
from slimkit.quant.int8_onnx import quantize_onnx_dynamic, quantize_onnx_static
from slimkit.quant.kbit import KBitConfig, freeze_kbit, kbit_layers, quantize_kbit, quantize_kbit_
from slimkit.quant.kbit_file import kbit_bytes, load_kbit, save_kbit
from slimkit.quant.pack import pack_bits, packed_size, unpack_bits
from slimkit.quant.precision import to_half

__all__ = [
    "Int8Config",
    "Int8Model",
    "KBitConfig",
    "QATModel",
    "convert_qat",
    "freeze_kbit",
    "kbit_bytes",
    "kbit_layers",
    "load_int8",
    "load_kbit",
    "pack_bits",
    "packed_size",
    "prepare_qat",
    "quantize_int8",
    "quantize_kbit",
    "quantize_kbit_",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
    "save_int8",
    "save_kbit",
    "to_half",
    "unpack_bits",
]
