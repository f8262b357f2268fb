"""Low-rank factorization: Linear and Conv2d layers become chains of smaller standard layers.

- SVD (Denton et al. 2014, "Exploiting Linear Structure Within Convolutional Networks for
  Efficient Evaluation"): a Linear m×n kept at rank r becomes n→r→m with r(m+n) weights instead
  of m·n. A 1×1 conv is the same matrix: it becomes two 1×1 convs, the stride on the first so the
  second runs on the subsampled map.
- Tucker-2 (Kim et al. 2016, "Compression of Deep Convolutional Neural Networks for Fast and Low
  Power Mobile Applications"): a kernel N×C×kh×kw compressed along its two channel modes,
  W ≈ G ×₀ U_out ×₁ U_in, runs as 1×1 (C→r_in) → kh×kw (r_in→r_out) → 1×1 (r_out→N) with
  C·r_in + r_in·r_out·kh·kw + r_out·N weights. Factors come from the HOSVD (De Lathauwer et al.
  2000), optionally refined by HOOI sweeps; ranks by hand, by kept energy, by a parameter budget
  or, as Kim et al. do, by empirical VBMF on the two unfoldings (Nakajima et al. 2013).
- CP (Lebedev et al. 2015, "Speeding-up Convolutional Neural Networks Using Fine-tuned
  CP-Decomposition"): W ≈ Σ_r a_r ∘ d_r ∘ b_r ∘ c_r fitted by ALS runs as 1×1 (C→R) →
  depthwise kh×1 → depthwise 1×kw → 1×1 (R→N) with R(C + kh + kw + N) weights. The separable
  k×1 / 1×k filters are Jaderberg et al. 2014's ("Speeding up Convolutional Neural Networks
  with Low Rank Expansions"); `slimkit.convert` uses them without the rank bottleneck.

Every replacement is an `nn.Sequential` of plain torch layers put under the original's name
(`model.set_submodule`), so the model stays the user's class and runs without slimkit. The block
carries a JSON-ready attribute `slimkit_factorized` ({"method", "rank"}) that `save_factorized`
turns into a description of the replaced layers: files hold that JSON beside safetensors
weights, and `load_factorized` rebuilds the architecture and swaps the blocks back in — no
pickle. Factors are computed in float64, so a full-rank factorization reproduces the layer up to
float32 rounding; the recovery step after a lossy one is `distill(factorized, original, ...)`.
"""

from slimkit.lowrank.config import (
    CP_ITERS,
    TAG,
    LayerFilter,
    LayerPlan,
    LowRank,
    check_filter,
    per_layer_items,
)
from slimkit.lowrank.decompose import (
    axis_conv_args,
    block,
    cp_als,
    cp_layer,
    new_conv,
    svd_layer,
    tucker2_layer,
)
from slimkit.lowrank.ranks import evbmf_rank
from slimkit.lowrank.saving import (
    FORMAT,
    METADATA_KEY,
    describe_blocks,
    factorized_layers,
    insert_blocks,
    load_factorized,
    save_factorized,
)
from slimkit.lowrank.selection import eligible_layers, select_layers
from slimkit.lowrank.whole_model import apply_plans, factorize, factorize_, plan_factorization

__all__ = [
    "CP_ITERS",
    "FORMAT",
    "METADATA_KEY",
    "TAG",
    "LayerFilter",
    "LayerPlan",
    "LowRank",
    "apply_plans",
    "axis_conv_args",
    "block",
    "check_filter",
    "cp_als",
    "cp_layer",
    "describe_blocks",
    "eligible_layers",
    "evbmf_rank",
    "factorize",
    "factorize_",
    "factorized_layers",
    "insert_blocks",
    "load_factorized",
    "new_conv",
    "per_layer_items",
    "plan_factorization",
    "save_factorized",
    "select_layers",
    "svd_layer",
    "tucker2_layer",
]
