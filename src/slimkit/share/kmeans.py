"""Weight sharing: per-layer k-means over the surviving weights, with centroid fine-tuning.

Han, Mao, Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR 2016, §3. The non-zero weights of each layer are
clustered into 2^b centroids by k-means (Lloyd 1982), each weight is replaced by its centroid,
and the centroids are fine-tuned: a centroid's gradient is the sum of the gradients of the
weights that share it, ∂L/∂C_k = Σ_{ij: I_ij = k} ∂L/∂W_ij. Centroids start linearly spaced over
[min, max] (the paper's best: the rare large weights matter most and density-based starts miss
them), at the quantiles of the weights (density-based), or at random weights (Forgy).

A shared layer is `torch.nn.utils.parametrize`d like the k-bit layers of `slimkit.quant`: the
forward sees codebook[indices], pruned entries index a constant zero kept after the codebook (so
the pruning mask holds by construction and gets no gradient), and autograd's backward of that
gather is exactly the summed gradient above. The codebook is a flat parameter, so
`slimkit.train.fit` applies no weight decay to it. Summed gradients grow with cluster size (often
thousands of weights): plain SGD needs a learning rate scaled down accordingly, whereas Adam
normalizes each centroid's step and is the practical choice.

With `codebook="float16"` the forward rounds the centroids to fp16 (straight-through), so that
`slimkit.share.slimfile` stores 16-bit codebooks and the decoded weights stay bit-identical.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.errors import ConfigError, WeightsError
from slimkit.layer_names import check_names, check_selection
from slimkit.prune.unstructured import MASK, make_permanent
from slimkit.reparam import remove_parametrizations

__all__ = [
    "CODEBOOKS",
    "INITS",
    "TYPES",
    "SharedWeight",
    "WeightSharing",
    "freeze_shared",
    "kmeans_1d",
    "share_weights",
    "share_weights_",
    "shared_tensors",
]

INITS = ("linear", "density", "random")
CODEBOOKS = ("float32", "float16")
TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
MAX_BITS = 8
_HALF_MAX = float(torch.finfo(torch.float16).max)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_bits(value: object) -> bool:
    return _is_int(value) and 1 <= value <= MAX_BITS


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"WeightSharing: {message}")


@dataclass(frozen=True)
class WeightSharing:
    """How to share weights (Han et al. 2016).

    bits: b, for 2^b clusters per layer. type_bits: b by layer class, e.g. {nn.Conv2d: 8,
    nn.Linear: 5} as in the paper (the first matching class wins). layer_bits: b by module name,
    overriding both. init: centroid initialization, one of INITS. bias_bits: also share each
    selected layer's bias with a codebook of its own of 2^bias_bits entries (None: biases stay
    float). codebook: "float32" (the paper) or "float16" centroids. iterations: at most this
    many Lloyd steps (1-D k-means converges in a few dozen). seed: for init="random".
    exclude: module names left unshared; only `include_types` layers are shared.
    """

    bits: int = 5
    type_bits: Mapping[type[nn.Module], int] | None = None
    layer_bits: Mapping[str, int] | None = None
    init: str = "linear"
    bias_bits: int | None = None
    codebook: str = "float32"
    iterations: int = 100
    seed: int = 0
    exclude: tuple[str, ...] = ()
    include_types: tuple[type[nn.Module], ...] = TYPES

    def __post_init__(self) -> None:
        if not _is_bits(self.bits):
            _fail(f"bits must be an int in 1..{MAX_BITS}, got {self.bits!r}")
        for field in ("type_bits", "layer_bits"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, Mapping):
                _fail(f"{field} must be a mapping to bits, got {value!r}")
        types = dict(self.type_bits or {})
        for cls, b in types.items():
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                _fail(f"type_bits keys must be nn.Module classes, got {cls!r}")
            if not _is_bits(b):
                _fail(f"type_bits[{cls.__name__}] must be an int in 1..{MAX_BITS}, got {b!r}")
        layers = dict(self.layer_bits or {})
        for name, b in layers.items():
            if not _is_bits(b):
                _fail(f"layer_bits[{name!r}] must be an int in 1..{MAX_BITS}, got {b!r}")
        if self.init not in INITS:
            _fail(f"init must be one of {INITS}, got {self.init!r}")
        if self.bias_bits is not None and not _is_bits(self.bias_bits):
            _fail(f"bias_bits must be None or an int in 1..{MAX_BITS}, got {self.bias_bits!r}")
        if self.codebook not in CODEBOOKS:
            _fail(f"codebook must be one of {CODEBOOKS}, got {self.codebook!r}")
        if not (_is_int(self.iterations) and self.iterations >= 1):
            _fail(f"iterations must be an int >= 1, got {self.iterations!r}")
        if not _is_int(self.seed):
            _fail(f"seed must be an int, got {self.seed!r}")
        check_selection("WeightSharing", self.exclude, layers, "layer_bits", self.include_types)
        # Own copies: a caller mutating its dict or list later cannot change a frozen config.
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "type_bits", MappingProxyType(types) or None)
        object.__setattr__(self, "layer_bits", MappingProxyType(layers) or None)

    def bits_for(self, name: str, module: nn.Module) -> int:
        """b of layer `name`: layer_bits, else the first matching type_bits, else bits."""
        if name in (self.layer_bits or {}):
            return self.layer_bits[name]
        for cls, b in (self.type_bits or {}).items():
            if isinstance(module, cls):
                return b
        return self.bits


# --- k-means -----------------------------------------------------------------------------------


def _initial(values: np.ndarray, k: int, init: str, seed: int) -> np.ndarray:
    if init == "linear":
        return np.linspace(values[0], values[-1], k)
    if init == "density":  # equal steps on the CDF's y-axis, mapped back through it
        return np.quantile(values, np.linspace(0.0, 1.0, k))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(values, size=k, replace=len(values) < k))


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (sorted centroids; ties to the lower one)."""
    return np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values, side="left")


def kmeans_1d(
    values: Tensor | np.ndarray,
    k: int,
    init: str = "linear",
    *,
    iterations: int = 100,
    seed: int = 0,
    codebook: str = "float32",
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on scalars: (k centroids, fp32 and sorted, at codebook precision; the
    int64 cluster of each value). Empty clusters keep their initial centroid.

    In 1-D the nearest centroid is found by binary search between the midpoints, so a step is
    O(n log k); it stops when no value changes cluster.
    """
    if not (_is_int(k) and k >= 1):
        raise ConfigError(f"kmeans_1d: k must be an int >= 1, got {k!r}")
    if init not in INITS:
        raise ConfigError(f"kmeans_1d: init must be one of {INITS}, got {init!r}")
    flat = torch.as_tensor(values).detach().cpu().reshape(-1).double().numpy()
    if flat.size == 0:
        return torch.zeros(k), torch.zeros(0, dtype=torch.int64)
    if not np.isfinite(flat).all():
        raise WeightsError("kmeans_1d: the values hold NaN or Inf; clustering needs finite ones")
    ordered = np.sort(flat)
    centroids = _initial(ordered, k, init, seed)
    assignment = _assign(ordered, centroids)
    for _ in range(iterations):
        sums = np.bincount(assignment, weights=ordered, minlength=k)
        sizes = np.bincount(assignment, minlength=k)
        centroids = np.where(sizes > 0, sums / np.maximum(sizes, 1), centroids)
        centroids = np.sort(centroids)
        new = _assign(ordered, centroids)
        if np.array_equal(new, assignment):
            break
        assignment = new
    dtype = torch.float16 if codebook == "float16" else torch.float32
    rounded = torch.from_numpy(centroids).to(dtype).float()
    if not bool(torch.isfinite(rounded).all()):
        raise WeightsError(f"kmeans_1d: centroids overflow {codebook}; use codebook='float32'")
    rounded = torch.sort(rounded).values
    # Final clusters against the centroids as stored, so each value gets its nearest one.
    final = _assign(flat, rounded.double().numpy())
    return rounded, torch.from_numpy(final).to(torch.int64)


# --- the parametrization -----------------------------------------------------------------------


class _ToHalf(torch.autograd.Function):
    """Round to fp16 (kept as fp32); identity gradient (straight-through)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.half().float()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class SharedWeight(nn.Module):
    """Parametrization: the (unused) latent tensor → codebook[indices], 0 where pruned.

    `centroids` (k,) is the trained parameter. `indices` holds each entry's cluster in [0, k),
    or k for a pruned entry, which reads the constant zero after the codebook.
    """

    def __init__(self, centroids: Tensor, indices: Tensor, bits: int, codebook: str) -> None:
        super().__init__()
        if codebook not in CODEBOOKS:
            raise ConfigError(f"SharedWeight: codebook must be one of {CODEBOOKS}")
        self.bits = bits
        self.codebook = codebook
        self.centroids = nn.Parameter(centroids.detach().float().clone().flatten())
        # int32: half the memory of int64, and torch indexes with it directly.
        self.register_buffer("indices", indices.detach().to(torch.int32).clone())

    def extra_repr(self) -> str:
        return f"bits={self.bits}, k={len(self.centroids)}, codebook={self.codebook}"

    def table(self) -> Tensor:
        """The codebook as the forward uses it (fp16-rounded if so), then the zero entry."""
        c = _ToHalf.apply(self.centroids) if self.codebook == "float16" else self.centroids
        return torch.cat([c, c.new_zeros(1)])

    def forward(self, latent: Tensor) -> Tensor:
        return self.table()[self.indices].to(latent.dtype)

    @torch.no_grad()
    def codebook_values(self) -> Tensor:
        """The k centroids as the forward uses them, fp32, detached."""
        return self.table()[:-1].detach().clone()


def shared_tensors(model: nn.Module) -> dict[str, SharedWeight]:
    """The parametrization of every shared tensor, by state-dict-style name ("fc1.weight")."""
    found = {}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor, stack in module.parametrizations.items():
            if len(stack) == 1 and isinstance(stack[0], SharedWeight):
                found[f"{name}.{tensor}" if name else tensor] = stack[0]
    return found


def _selected(model: nn.Module, config: WeightSharing) -> dict[str, nn.Module]:
    layers: dict[str, nn.Module] = {}
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, config.include_types):
            continue
        if parametrize.is_parametrized(module):
            stacks = module.parametrizations.values()
            shared = any(isinstance(p, SharedWeight) for stack in stacks for p in stack)
            what = "shared" if shared else "parametrized (quantized?)"
            _fail(f"layer {name!r} is already {what}: share the plain model, or freeze it first")
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter):
            continue
        if id(weight) in owners:
            _fail(f"layer {name!r} shares its weight with {owners[id(weight)]!r}: exclude one")
        owners[id(weight)] = name
        layers[name] = module
    names = list(layers)
    check_names("WeightSharing", model, names, config.exclude, "exclude", "shareable")
    check_names("WeightSharing", model, names, config.layer_bits or {}, "layer_bits", "shareable")
    return {n: m for n, m in layers.items() if n not in config.exclude}


def _share(module: nn.Module, tensor: str, bits: int, config: WeightSharing, where: str) -> None:
    value = getattr(module, tensor).detach()
    if value.dtype != torch.float32:
        _fail(f"{where} is {value.dtype}; weight sharing stores float32 tensors, call .float()")
    if not bool(torch.isfinite(value).all()):
        raise WeightsError(f"{where} has NaN or Inf values: reload a good checkpoint")
    if config.codebook == "float16" and value.numel() and float(value.abs().max()) > _HALF_MAX:
        raise WeightsError(f"{where} has values beyond ±{_HALF_MAX:g}: use codebook='float32'")
    kept = value != 0  # after make_permanent the pruned entries are exactly the zeros
    k = 1 << bits
    centroids, clusters = kmeans_1d(
        value[kept],
        k,
        config.init,
        iterations=config.iterations,
        seed=config.seed,
        codebook=config.codebook,
    )
    indices = torch.full(value.shape, k, dtype=torch.int64)
    indices[kept.cpu()] = clusters
    shared = SharedWeight(
        centroids.to(value.device), indices.to(value.device), bits, config.codebook
    )
    parametrize.register_parametrization(module, tensor, shared)


def share_weights_(model: nn.Module, config: WeightSharing) -> nn.Module:
    """Share the weights of `model` in place (parametrized); returns `model`.

    Pruning masks are made permanent first (`slimkit.prune.make_permanent`, on every layer):
    a shared layer then keeps its zeros fixed by construction.
    """
    if not isinstance(config, WeightSharing):
        raise ConfigError(f"config must be a WeightSharing, got {type(config).__name__}")
    layers = _selected(model, config)
    if not layers:
        _fail(f"{type(model).__name__} has no layer of {config.include_types} outside `exclude`")
    if any(isinstance(getattr(m, MASK, None), Tensor) for m in model.modules()):
        make_permanent(model)
    for name, module in layers.items():
        _share(module, "weight", config.bits_for(name, module), config, f"{name}.weight")
        bias = getattr(module, "bias", None)
        if config.bias_bits is not None and isinstance(bias, nn.Parameter):
            _share(module, "bias", config.bias_bits, config, f"{name}.bias")
    return model


def share_weights(model: nn.Module, config: WeightSharing) -> nn.Module:
    """A copy of `model` whose selected layers share weights; `model` is untouched.

    Fine-tune the copy with `fit` as usual: only the centroids (and unshared parameters) train.
    """
    return share_weights_(copy.deepcopy(model), config)


def freeze_shared(model: nn.Module) -> nn.Module:
    """In place: each shared tensor becomes a plain parameter holding its shared values (the
    same Parameter object as before sharing, so an optimizer holding it stays valid)."""
    by_module: dict[str, list[str]] = {}
    for key in shared_tensors(model):
        module_name, _, tensor = key.rpartition(".")
        by_module.setdefault(module_name, []).append(tensor)
    for module_name, tensors in by_module.items():
        remove_parametrizations(model.get_submodule(module_name), tensors)
    return model
