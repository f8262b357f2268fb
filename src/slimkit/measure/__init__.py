"""Measure a model honestly: params, size, MACs, latency, memory, accuracy, scores, per layer."""

from slimkit.measure.accuracy import EvalResult, evaluate
from slimkit.measure.latency import LatencyStats, compare_latency, measure_latency
from slimkit.measure.macs import MacCount, count_macs
from slimkit.measure.memory import MemoryPeak, peak_memory
from slimkit.measure.metrics import Metrics, measure
from slimkit.measure.params import ParamCount, count_params
from slimkit.measure.profile import LayerProfile, profile_layers
from slimkit.measure.scores import EnergyEstimate, estimate_energy, information_density, netscore
from slimkit.measure.size import dense_bytes, file_bytes, saved_bytes, tensor_bytes

__all__ = [
    "EnergyEstimate",
    "EvalResult",
    "LatencyStats",
    "LayerProfile",
    "MacCount",
    "MemoryPeak",
    "Metrics",
    "ParamCount",
    "compare_latency",
    "count_macs",
    "count_params",
    "dense_bytes",
    "estimate_energy",
    "evaluate",
    "file_bytes",
    "information_density",
    "measure",
    "measure_latency",
    "netscore",
    "peak_memory",
    "profile_layers",
    "saved_bytes",
    "tensor_bytes",
]
