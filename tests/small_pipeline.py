"""Small settings shared by the pipeline tests: a few hundred training images and short
schedules keep each run in seconds; they test the pipeline's logic, not accuracy."""

import torch

# Pruning with distillation, then int8 for ONNX Runtime.
SMALL = """
steps:
  - prune: {method: magnitude, sparsity: 0.8, scope: global, epochs: 1, lr: 0.002,
            optimizer: adam, distill_alpha: 0.5}
  - quantize: {scheme: int8, runtime: onnxruntime, samples: 64}
"""


def small_inputs(real):
    """`runner.resolve_inputs` training on 512 of the data's images and measuring on 500."""

    def small(recipe):
        inputs = real(recipe)
        data = inputs.data
        inputs.data = type(data)(
            data.train.subset(torch.arange(512)), data.test.subset(torch.arange(500)), data.name
        )
        return inputs

    return small
