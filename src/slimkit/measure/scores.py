"""Single-number scores that weigh accuracy against cost, and an energy estimate.

- Information density (Canziani et al. 2016): top-1 accuracy % per million parameters.
- NetScore (Wong 2018): Ω = 20·log10(a^α / (p^β · m^γ)), α = 2, β = γ = 0.5, with a = top-1 in %,
  p = parameters in millions, m = MACs in billions.
- Energy: an *estimate* from operation and memory-access counts with Horowitz's 45 nm
  per-operation energies (ISSCC 2014). Real chips differ; use it to compare models, not to
  predict a battery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slimkit.errors import ConfigError


def information_density(top1_percent: float, params: int) -> float:
    """Top-1 accuracy (%) per million parameters."""
    if params <= 0:
        raise ConfigError(f"information density needs a positive parameter count, got {params}")
    return top1_percent / (params / 1e6)


def netscore(
    top1_percent: float,
    params: int,
    macs: int,
    alpha: float = 2.0,
    beta: float = 0.5,
    gamma: float = 0.5,
) -> float:
    """NetScore Ω in dB; 1.0 MobileNet-224 (70.6 %, 4.2 M, 0.569 G) scores about 70.2."""
    if top1_percent <= 0 or params <= 0 or macs <= 0:
        raise ConfigError(
            f"NetScore needs positive accuracy, params and MACs, got {top1_percent}, {params}, "
            f"{macs}"
        )
    p, m = params / 1e6, macs / 1e9
    return 20.0 * math.log10(top1_percent**alpha / (p**beta * m**gamma))


# Horowitz 2014, 45 nm, picojoules per operation or per 32-bit access.
ENERGY_PJ = {
    "fp32": {"add": 0.9, "mult": 3.7},
    "int32": {"add": 0.1, "mult": 3.1},
    "int8": {"add": 0.03, "mult": 0.2},
    "sram_read_32b": 5.0,
    "dram_read_32b": 640.0,
}


@dataclass(frozen=True)
class EnergyEstimate:
    """Estimated energy of one inference, in microjoules, split by where it goes."""

    compute_uj: float
    weights_uj: float  # every weight word read once from DRAM
    activations_uj: float  # every activation word written and read once through SRAM

    @property
    def total_uj(self) -> float:
        return self.compute_uj + self.weights_uj + self.activations_uj


def estimate_energy(
    macs: int, weight_bytes: int, activation_elements: int, precision: str = "fp32"
) -> EnergyEstimate:
    """Estimate per-inference energy: MACs × (mult + add) plus weight and activation traffic."""
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"precision must be 'fp32' or 'int8', got {precision!r}")
    # int8 products accumulate in int32, as every int8 kernel does.
    mult = ENERGY_PJ[precision]["mult"]
    add = ENERGY_PJ["fp32" if precision == "fp32" else "int32"]["add"]
    act_bytes = 4 if precision == "fp32" else 1
    pj_compute = macs * (mult + add)
    pj_weights = weight_bytes / 4 * ENERGY_PJ["dram_read_32b"]
    pj_acts = 2 * activation_elements * act_bytes / 4 * ENERGY_PJ["sram_read_32b"]
    return EnergyEstimate(pj_compute / 1e6, pj_weights / 1e6, pj_acts / 1e6)
