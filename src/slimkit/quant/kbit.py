"""K-bit, binary and ternary weights, trained through fake quantization (QAT).

- Uniform symmetric k-bit (2..8 bits): w ≈ q·s, q = round(w/s) in [−(2^(k−1)−1), 2^(k−1)−1],
  s = max|w| / (2^(k−1)−1) per output channel, or per group of G consecutive weights of a row.
- LSQ: Esser, McKinstry, Bablani, Appuswamy, Modha, "Learned Step Size Quantization", ICLR
  2020: the step s is a trained parameter (init 2·mean|w|/√Qp), q in [−2^(k−1), 2^(k−1)−1], and
  its gradient is scaled by 1/√(n·Qp), n the weights sharing the step.
- Binary (BWN): Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net", ECCV 2016: w ≈ α·sign(w) with
  α = mean|w| per output filter (sign(0) = +1, so there are exactly two values).
- Ternary (TWN): Li & Liu, "Ternary Weight Networks", 2016: Δ = 0.7·mean|w| per filter,
  w ≈ α·sign(w)·[|w| > Δ] with α = mean of |w| over |w| > Δ.
- Activations (optional, `act_bits`): unsigned k-bit with a learned clip α as in PACT (Choi et
  al. 2018), initialized to the largest input of the first batch; meant for post-ReLU inputs.

Gradients use the straight-through estimator (Bengio, Léonard, Courville 2013). The layers are
`torch.nn.utils.parametrize`d: the latent float weight is what trains (with `slimkit.train.fit`
or any loop), the forward always sees the quantized weight. First and last quantizable layers
stay at 8 bits by default, as in the LSQ and PACT papers.

Scales are fp16 — what `save_kbit` stores — and the forward already uses the fp16 values, so a
saved and loaded model has bit-identical weights. Levels times an fp16 scale (≤ 8 + 11
significant bits) are exact in fp32, so the dequantized weight does not depend on rounding.
Uniform scales round *up* to fp16 so that max|w| stays inside the clipping range.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.errors import ConfigError, WeightsError
from slimkit.layer_names import check_names, check_selection
from slimkit.reparam import remove_parametrizations

__all__ = [
    "SCHEMES",
    "ActQuantizer",
    "KBitConfig",
    "KBitWeight",
    "dequantize",
    "freeze_kbit",
    "kbit_layers",
    "quantize_kbit",
    "quantize_kbit_",
]

SCHEMES = ("uniform", "lsq", "binary", "ternary")
GRANULARITIES = ("channel", "group")
TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ACT = "act_quant"  # submodule name of a layer's input quantizer
KEEP_BITS = 8  # first and last layers
_DEFAULT_BITS = {"uniform": 4, "lsq": 4, "binary": 1, "ternary": 2}
_HALF_MAX = torch.finfo(torch.float16).max
_HALF_TINY = 2.0**-24  # smallest positive fp16 (subnormal)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"KBitConfig: {message}")


@dataclass(frozen=True)
class KBitConfig:
    """How to quantize weights (and optionally activations).

    bits: weight bits; None means the scheme's own (4 for uniform/lsq, 1 binary, 2 ternary).
    scheme: "uniform" (max-abs scales), "lsq" (learned steps), "binary" or "ternary".
    granularity: one scale per output channel ("channel"), or per `group_size` consecutive
        weights of each output row ("group"; the last group of a row may be shorter).
    keep_first_last: the first and last quantizable layers (module order) use 8 bits.
    layer_bits: bits by module name, overriding everything else. A layer at the config's own
        bits uses its scheme; at other widths 1 bit is binary and 2..8 bits are uniform (LSQ
        when scheme="lsq").
    exclude: module names left in float.
    act_bits: quantize the inputs of every quantized layer but the first (which sees the data)
        to this many unsigned bits (8 for a kept last layer); None keeps them float.
    """

    bits: int | None = None
    scheme: str = "uniform"
    granularity: str = "channel"
    group_size: int | None = None
    keep_first_last: bool = True
    layer_bits: Mapping[str, int] | None = None
    exclude: tuple[str, ...] = ()
    act_bits: int | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            _fail(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        bits = _DEFAULT_BITS[self.scheme] if self.bits is None else self.bits
        if not _is_int(bits) or not 1 <= bits <= 8:
            _fail(f"bits must be an int in 1..8, got {bits!r}")
        if self.scheme in ("binary", "ternary") and bits != _DEFAULT_BITS[self.scheme]:
            _fail(
                f"{self.scheme} weights take {_DEFAULT_BITS[self.scheme]} bit(s); "
                f"drop bits= or set bits={_DEFAULT_BITS[self.scheme]}, got {bits}"
            )
        if self.scheme in ("uniform", "lsq") and bits < 2:
            _fail(f"{self.scheme} needs 2..8 bits; for 1-bit weights use scheme='binary'")
        object.__setattr__(self, "bits", int(bits))
        if self.granularity not in GRANULARITIES:
            _fail(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "group":
            if not (_is_int(self.group_size) and self.group_size >= 1):
                _fail(f"granularity='group' needs group_size, an int >= 1, got {self.group_size!r}")
        elif self.group_size is not None:
            _fail("group_size applies only to granularity='group'; drop it or set that")
        if not isinstance(self.keep_first_last, bool):
            _fail(f"keep_first_last must be True or False, got {self.keep_first_last!r}")
        if self.layer_bits is not None and not isinstance(self.layer_bits, Mapping):
            _fail(f"layer_bits must map module names to bits, got {self.layer_bits!r}")
        overrides = dict(self.layer_bits or {})
        for name, value in overrides.items():
            if not _is_int(value) or not 1 <= value <= 8:
                _fail(f"layer_bits[{name!r}] must be an int in 1..8, got {value!r}")
        check_selection("KBitConfig", self.exclude, overrides, "layer_bits")
        if self.act_bits is not None and not (_is_int(self.act_bits) and 1 <= self.act_bits <= 8):
            _fail(f"act_bits must be None or an int in 1..8, got {self.act_bits!r}")
        # Own copies: a caller mutating its dict or list later cannot change a frozen config.
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "layer_bits", MappingProxyType(overrides) or None)

    def scheme_for(self, bits: int) -> str:
        """The scheme a layer quantized to `bits` uses under this config."""
        if bits == self.bits:
            return self.scheme
        if bits == 1:
            return "binary"
        return "lsq" if self.scheme == "lsq" else "uniform"


# --- straight-through estimators ---------------------------------------------------------------
# Custom functions rather than the `x + (f(x) - x).detach()` idiom: that sum is not exactly f(x)
# in floating point, and the forward value must equal the stored weight bit for bit.


class _Through(torch.autograd.Function):
    """Forward `quantized`; backward passes the gradient to `latent` unchanged."""

    @staticmethod
    def forward(ctx: Any, latent: Tensor, quantized: Tensor) -> Tensor:
        return quantized.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _Round(torch.autograd.Function):
    """Round to the nearest integer; identity gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _ToHalf(torch.autograd.Function):
    """Round to the nearest positive fp16 value (kept as fp32); identity gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clamp(_HALF_TINY, _HALF_MAX).half().float()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _GradScale(torch.autograd.Function):
    """Identity forward; gradient times `scale` (LSQ's step-size gradient scale)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


# --- the weight quantizer ----------------------------------------------------------------------


def _half_up(x: Tensor) -> Tensor:
    """The smallest fp16 value >= x (x >= 0, fp32), at least the smallest positive fp16."""
    h = x.half()
    low = h.float() < x
    h = torch.where(low, torch.nextafter(h, torch.full_like(h, math.inf)), h)
    return h.clamp_min(_HALF_TINY)


def _levels_range(scheme: str, bits: int) -> tuple[int, int]:
    """(lowest, highest) integer level of a scheme: the codes are level − lowest."""
    if scheme in ("binary", "ternary"):
        return -1, 1  # binary never uses level 0, and stores 1 bit: code 0 → −1, 1 → +1
    if scheme == "lsq":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1  # uniform: symmetric, narrow range


def _offset(scheme: str, bits: int) -> int:
    """Code = level + offset (binary: code = (level + 1) / 2)."""
    return 1 if scheme in ("binary", "ternary") else 2 ** (bits - 1)


def _grouped(w: Tensor, group_size: int) -> Tensor:
    """(out, …) → (out, groups, group_size), each row zero-padded to whole groups."""
    rows = w.reshape(w.shape[0], -1)
    r = rows.shape[1]
    pad = -r % group_size
    if pad:
        rows = F.pad(rows, (0, pad))
    return rows.view(rows.shape[0], -1, group_size)


def _ungrouped(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    r = math.prod(shape[1:])
    return g.reshape(g.shape[0], -1)[:, :r].reshape(shape)


def _counts(shape: tuple[int, ...], group_size: int) -> Tensor:
    """Real (unpadded) weights in each group of a row, float64 (groups,)."""
    r = math.prod(shape[1:])
    counts = torch.full((-(-r // group_size),), float(group_size), dtype=torch.float64)
    counts[-1] = r - group_size * (len(counts) - 1)
    return counts


class KBitWeight(nn.Module):
    """Parametrization: the latent float weight → its fake-quantized value.

    `bits` is the storage width (binary 1, ternary 2). One fp16 scale per (output row, group);
    `group_size` equal to the row length means one per output channel.
    """

    def __init__(self, weight: Tensor, scheme: str, bits: int, group_size: int | None) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ConfigError(f"KBitWeight: scheme must be one of {SCHEMES}, got {scheme!r}")
        row = math.prod(weight.shape[1:])
        self.scheme = scheme
        self.bits = bits
        self.group_size = row if group_size is None else min(group_size, row)
        self.lowest, self.highest = _levels_range(scheme, bits)
        if scheme == "lsq":
            with torch.no_grad():
                g = _grouped(weight.detach().float(), self.group_size).abs()
                mean = g.double().sum(-1) / _counts(tuple(weight.shape), self.group_size)
                step = 2 * mean / math.sqrt(self.highest)
            # Flat, so that `fit` treats it like a bias (no weight decay pulling steps to 0).
            step = step.float().clamp_min(_HALF_TINY).flatten()
            self.step = nn.Parameter(step.to(weight.device))

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, bits={self.bits}, group_size={self.group_size}"

    def _lsq(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Levels (float, integral) and fp16-valued steps (fp32), differentiable (LSQ)."""
        g = 1.0 / math.sqrt(self.group_size * self.highest)
        step = _ToHalf.apply(_GradScale.apply(self.step, g).abs()).view(w.shape[0], -1)
        x = _grouped(w, self.group_size) / step.unsqueeze(-1)
        return _Round.apply(x.clamp(self.lowest, self.highest)), step

    @torch.no_grad()
    def encode(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Codes (uint8, weight's shape, in [0, 2^bits)) and fp16 scales (out, groups)."""
        w = weight.detach().float()
        if self.scheme == "lsq":
            levels, scale = self._lsq(w)
            scale = scale.half()
        else:
            g = _grouped(w, self.group_size)
            if self.scheme == "uniform":
                scale = _half_up(g.abs().amax(-1) / self.highest)
                levels = torch.round(g / scale.float().unsqueeze(-1))
                levels = levels.clamp(self.lowest, self.highest)
            else:
                counts = _counts(tuple(w.shape), self.group_size).to(g.device)
                a = g.abs().double()
                sign = torch.where(g >= 0, 1.0, -1.0)
                if self.scheme == "binary":
                    scale = (a.sum(-1) / counts).half()
                    levels = sign
                else:
                    delta = 0.7 * a.sum(-1, keepdim=True) / counts.unsqueeze(-1)
                    keep = a > delta
                    n = keep.sum(-1)
                    alpha = (a * keep).sum(-1) / n.clamp_min(1)
                    scale = alpha.half()
                    levels = sign * keep
        codes = levels + _offset(self.scheme, self.bits)
        if self.scheme == "binary":
            codes = codes / 2
        return _ungrouped(codes, tuple(w.shape)).to(torch.uint8), scale

    def forward(self, weight: Tensor) -> Tensor:
        if self.scheme == "lsq":
            levels, step = self._lsq(weight.float())
            quantized = _ungrouped(levels * step.unsqueeze(-1), tuple(weight.shape))
            return quantized.to(weight.dtype)
        codes, scale = self.encode(weight)
        quantized = dequantize(codes, scale, self.scheme, self.bits, self.group_size)
        return _Through.apply(weight, quantized.to(weight.dtype))


def dequantize(codes: Tensor, scales: Tensor, scheme: str, bits: int, group_size: int) -> Tensor:
    """Float32 weights from codes (uint8, the weight's shape) and scales (out, groups)."""
    shape = tuple(codes.shape)
    levels = _grouped(codes.float(), group_size)
    levels = levels * 2 - 1 if scheme == "binary" else levels - _offset(scheme, bits)
    return _ungrouped(levels * scales.float().unsqueeze(-1), shape)


# --- activations -------------------------------------------------------------------------------


class ActQuantizer(nn.Module):
    """Unsigned `bits`-bit fake quantization of a layer's input with a learned clip (PACT).

    y = clamp(x, 0, α) rounded to multiples of α/(2^bits − 1). α is a parameter initialized to
    the largest value of the first batch seen (the `calibrated` flag records that); its gradient
    is autograd's through the clamp and the step, with a straight-through rounding.
    """

    def __init__(self, bits: int, name: str = "") -> None:
        super().__init__()
        self.bits = bits
        self.name = name
        self.clip = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("calibrated", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"bits={self.bits}"

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.calibrated):
            with torch.no_grad():
                if float(x.min()) < 0:
                    warnings.warn(
                        f"the input of {self.name or 'a layer'} has negative values, which "
                        "unsigned activation quantization clips to 0: exclude that layer",
                        stacklevel=2,
                    )
                self.clip.fill_(max(float(x.max()), 1e-8))
                self.calibrated.fill_(True)
        levels = 2**self.bits - 1
        clip = self.clip.abs().clamp_min(1e-8).to(x.dtype)
        step = clip / levels
        y = torch.minimum(x.clamp_min(0), clip)
        return _Round.apply(y / step) * step


def _quantize_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    # A module-level function, not a closure: deepcopy keeps it pointing at each copy's own
    # quantizer (the hook finds it through the module it is called with).
    quantizer = module._modules.get(ACT)
    if quantizer is None or not args:
        return None
    return (quantizer(args[0]), *args[1:])


def attach_act_quantizer(module: nn.Module, bits: int, name: str = "") -> ActQuantizer:
    """Give `module` an `act_quant` submodule and the pre-hook that applies it to its input."""
    quantizer = ActQuantizer(bits, name)
    module.add_module(ACT, quantizer)
    if _quantize_input not in module._forward_pre_hooks.values():
        module.register_forward_pre_hook(_quantize_input)
    return quantizer


# --- verbs -------------------------------------------------------------------------------------


def kbit_layers(model: nn.Module) -> dict[str, KBitWeight]:
    """The k-bit parametrization of every quantized layer, by module name."""
    found = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            stack = module.parametrizations.weight
            if len(stack) == 1 and isinstance(stack[0], KBitWeight):
                found[name] = stack[0]
    return found


def _quantizable(model: nn.Module) -> dict[str, nn.Module]:
    layers: dict[str, nn.Module] = {}
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, TYPES):
            continue
        if parametrize.is_parametrized(module, "weight"):
            what = "k-bit quantized" if name in kbit_layers(model) else "parametrized"
            raise ConfigError(
                f"layer {name!r} is already {what}: quantize the float model, or freeze_kbit first"
            )
        weight = module.weight
        if id(weight) in owners:
            raise ConfigError(
                f"layer {name!r} shares its weight with {owners[id(weight)]!r}: exclude one of them"
            )
        owners[id(weight)] = name
        layers[name] = module
    return layers


def _plan(model: nn.Module, config: KBitConfig) -> dict[str, tuple[str, int, int | None]]:
    """name → (scheme, bits, activation bits or None) for every layer to quantize."""
    layers = _quantizable(model)
    names = list(layers)
    check_names("KBitConfig", model, names, config.exclude, "exclude", "quantizable")
    check_names("KBitConfig", model, names, config.layer_bits or {}, "layer_bits", "quantizable")
    kept = {names[0], names[-1]} if config.keep_first_last and names else set()
    overrides = config.layer_bits or {}
    plan = {}
    for i, name in enumerate(names):
        if name in config.exclude:
            continue
        bits = overrides.get(name, KEEP_BITS if name in kept else config.bits)
        act = None
        if config.act_bits is not None and i > 0:
            act = KEEP_BITS if name in kept else config.act_bits
        plan[name] = (config.scheme_for(bits), bits, act)
    return plan


def check_weight(name: str, weight: Tensor) -> None:
    w = weight.detach()
    if not bool(torch.isfinite(w).all()):
        raise WeightsError(
            f"layer {name!r} has NaN or Inf weights: quantization needs finite weights; "
            "reload a good checkpoint or lower the learning rate"
        )
    if w.numel() and float(w.abs().max()) > _HALF_MAX:
        raise WeightsError(
            f"layer {name!r} has weights beyond ±{_HALF_MAX:g}, which fp16 scales cannot hold"
        )


def quantize_kbit_(model: nn.Module, config: KBitConfig) -> nn.Module:
    """Quantize `model`'s Conv/Linear weights in place (parametrized); returns `model`."""
    if not isinstance(config, KBitConfig):
        raise ConfigError(f"config must be a KBitConfig, got {type(config).__name__}")
    plan = _plan(model, config)
    if not plan:
        raise ConfigError(
            f"{type(model).__name__} has no Conv/Linear layer to quantize outside `exclude`"
        )
    modules = dict(model.named_modules())
    for name in plan:
        check_weight(name, modules[name].weight)
    group = config.group_size if config.granularity == "group" else None
    for name, (scheme, bits, act_bits) in plan.items():
        module = modules[name]
        quantizer = KBitWeight(module.weight, scheme, bits, group)
        parametrize.register_parametrization(module, "weight", quantizer)
        if act_bits is not None:
            attach_act_quantizer(module, act_bits, name)
    return model


def quantize_kbit(model: nn.Module, config: KBitConfig) -> nn.Module:
    """A copy of `model` whose Conv/Linear weights are fake-quantized; `model` is untouched.

    Train the copy with `fit` as usual: gradients reach the latent float weights (and LSQ
    steps, PACT clips) through straight-through estimators; every forward sees k-bit weights.
    """
    return quantize_kbit_(copy.deepcopy(model), config)


def freeze_kbit(model: nn.Module) -> nn.Module:
    """In place: make the quantization permanent. Each quantized layer becomes a plain layer
    whose weight is the dequantized value; activation quantizers stay (they are part of the
    computation). Returns `model`."""
    for name in kbit_layers(model):
        module = model.get_submodule(name)
        check_weight(name, module.parametrizations.weight.original)
        remove_parametrizations(module, ["weight"])
    return model
