"""One call, every figure: `measure(model, ...)` returns a JSON-serializable `Metrics` record.

Which figures are taken is chosen by what is passed: accuracy needs data, the file size needs
an artifact path (else the model's safetensors file is written to a temp dir and measured).
Costly parts (memory probes, per-layer profile) can be switched off.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError
from slimkit.measure.accuracy import evaluate
from slimkit.measure.common import (
    check_input,
    eval_mode,
    example_input,
    first_tensor,
    model_device,
)
from slimkit.measure.latency import measure_latency
from slimkit.measure.macs import count_macs
from slimkit.measure.memory import peak_memory
from slimkit.measure.params import count_params
from slimkit.measure.profile import LayerProfile, profile_layers
from slimkit.measure.scores import estimate_energy, information_density, netscore
from slimkit.measure.size import dense_bytes, file_bytes, saved_bytes, tensor_bytes


@dataclass
class Metrics:
    """Every figure slimkit reports for one model. Units are in the names; None = not taken."""

    model: str
    params: int
    params_nonzero: int
    sparsity: float  # fraction of zero parameters
    size_dense_bytes: int  # parameters as dense fp32
    size_tensors_bytes: int  # parameters + buffers as held in memory (dtype-aware)
    size_file_bytes: int  # the saved artifact on disk
    macs: int  # per sample, forward
    macs_effective: int  # per sample, zero weights skipped
    macs_training: int  # per sample, forward + backward
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    latency_batch: int
    latency_end_to_end_p50_ms: float | None  # with the caller's pre-/post-processing
    latency_end_to_end_p99_ms: float | None
    threads: int
    throughput_per_s: float | None  # samples/s at `throughput_batch`
    throughput_batch: int | None
    memory_inference_bytes: int | None  # tensors + RSS growth of one forward at batch 1
    memory_training_bytes: int | None  # tensors + RSS growth of one SGD step at `throughput_batch`
    top1: float | None  # %
    top5: float | None  # %
    eval_samples: int | None
    train_time_s: float | None
    information_density: float | None  # top-1 % per million parameters
    netscore: float | None
    energy_uj_estimate: float  # per sample; 45 nm estimate, not a measurement
    layers: list[LayerProfile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        """Inverse of `to_dict` (for records read back from JSON)."""
        data = dict(data)
        data["layers"] = [LayerProfile(**row) for row in data.get("layers", [])]
        return cls(**data)


def _training_step_memory(model: nn.Module, batch: torch.Tensor) -> int:
    """RSS growth of one forward + backward + SGD-momentum step on a copy of the model."""

    def step() -> None:
        m = copy.deepcopy(model).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        first_tensor(m(batch)).float().sum().backward()
        opt.step()

    return peak_memory(step).increase_bytes


def inference_memory(model: nn.Module, example: torch.Tensor) -> int:
    """Bytes one inference on `example` adds at its peak (the working set; weights excluded)."""

    def forward() -> None:
        with eval_mode(model), torch.inference_mode():
            model(example)

    return peak_memory(forward).increase_bytes


def measure(
    model: nn.Module,
    *,
    name: str | None = None,
    example: torch.Tensor | None = None,
    data: ArrayDataset | None = None,
    artifact: str | Path | list[str | Path] | None = None,
    threads: int = 1,
    latency_calls: int = 200,
    preprocess: Callable[[Any], torch.Tensor] | None = None,
    raw_input: Any = None,
    postprocess: Callable[[Any], Any] | None = None,
    throughput_batch: int | None = 64,
    memory: bool = True,
    layers: bool = True,
    train_time_s: float | None = None,
    trace_path: str | Path | None = None,
    reference: nn.Module | None = None,
) -> Metrics:
    """Measure `model` on every metric; see `Metrics` for the fields.

    `example` is one sample batch (batch size 1 is used for latency and MACs); without it the
    model's `input_shape` attribute makes a random one, or the first sample of `data`. With
    `preprocess`/`postprocess`, end-to-end latency is timed too, as
    `postprocess(model(preprocess(raw_input)))` (raw_input defaults to the example).

    For a model on another runtime (int8 graph, ONNX Runtime) that torch cannot count op by op,
    `reference` is the float model it implements: parameters, MACs and the per-layer profile come
    from it, while speed, memory, accuracy and sizes are the runtime model's own. Training
    memory is then not measured (the runtime model does not train), nor inference memory of a
    runtime whose weights live outside torch.
    """
    if throughput_batch is not None and throughput_batch < 1:
        raise ConfigError(
            f"throughput batch must be >= 1 (or None to skip), got {throughput_batch}"
        )
    if (device := model_device(model)).type != "cpu":
        raise ConfigError(
            f"measure() reports CPU figures but the model is on {device}: call model.cpu() first"
        )
    if example is None:
        example = data.normalized(torch.arange(1)) if data is not None else example_input(model)
    example = example[:1]
    check_input(model, example)
    counted = reference if reference is not None else model
    params = count_params(counted)
    macs = count_macs(counted, example)
    # A pair, not one sample: train-mode BatchNorm cannot normalize a 1×1 map of one sample.
    macs_train = count_macs(counted, torch.cat([example, example]), training=True)
    latency = measure_latency(model, example, threads=threads, calls=latency_calls)
    end_to_end = None
    if preprocess is not None or postprocess is not None:
        end_to_end = measure_latency(
            model,
            example if raw_input is None else raw_input,
            threads=threads,
            calls=latency_calls,
            preprocess=preprocess,
            postprocess=postprocess,
        )
    throughput = None
    big_batch = None
    if throughput_batch is not None:
        big_batch = example.expand(throughput_batch, *example.shape[1:]).contiguous()
        calls = max(5, latency_calls // 10)
        throughput = measure_latency(
            model, big_batch, threads=threads, calls=calls, warmup=3
        ).throughput
    weights_in_memory = tensor_bytes(model)
    mem_inf = mem_train = None
    # A runtime holding its weights outside torch (ONNX Runtime) allocates them when its session
    # is built, before the probe: its growth would read as ~0, so it is not reported.
    foreign = reference is not None and weights_in_memory == 0
    if memory and not foreign:
        mem_inf = weights_in_memory + inference_memory(model, example)
        if reference is None:
            mem_train = weights_in_memory + _training_step_memory(
                model, big_batch if big_batch is not None else example
            )
    top1 = top5 = None
    samples = None
    if data is not None:
        result = evaluate(model, data)
        top1, top5, samples = result.top1, result.top5, result.samples
    layer_rows = (
        profile_layers(counted, example, threads=threads, trace_path=trace_path, macs=macs)
        if layers
        else []
    )
    paths = [artifact] if isinstance(artifact, (str, Path)) else artifact
    return Metrics(
        model=name or type(model).__name__,
        params=params.total,
        params_nonzero=params.nonzero,
        sparsity=params.sparsity,
        size_dense_bytes=dense_bytes(counted),
        size_tensors_bytes=weights_in_memory,
        size_file_bytes=file_bytes(*paths) if paths else saved_bytes(model),
        macs=macs.dense,
        macs_effective=macs.effective,
        macs_training=macs_train.dense // 2,
        latency_p50_ms=latency.p50_ms,
        latency_p90_ms=latency.p90_ms,
        latency_p99_ms=latency.p99_ms,
        latency_mean_ms=latency.mean_ms,
        latency_batch=latency.batch_size,
        latency_end_to_end_p50_ms=end_to_end.p50_ms if end_to_end else None,
        latency_end_to_end_p99_ms=end_to_end.p99_ms if end_to_end else None,
        threads=threads,
        throughput_per_s=throughput,
        throughput_batch=throughput_batch if throughput is not None else None,
        memory_inference_bytes=mem_inf,
        memory_training_bytes=mem_train,
        top1=top1,
        top5=top5,
        eval_samples=samples,
        train_time_s=train_time_s,
        information_density=information_density(top1, params.total) if top1 else None,
        netscore=netscore(top1, params.total, macs.dense) if top1 and macs.dense else None,
        energy_uj_estimate=estimate_energy(
            macs.effective, weights_in_memory, macs.activation_elements
        ).total_uj,
        layers=layer_rows,
    )
