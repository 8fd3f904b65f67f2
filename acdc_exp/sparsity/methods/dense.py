"""No pruning: the dense baseline (``configs/sparsity/dense.yaml``)."""

from __future__ import annotations

from acdc_exp.registries import SPARSITY
from acdc_exp.sparsity.methods.base import SparsityMethod


@SPARSITY.register()
class Dense(SparsityMethod):
    """Prunes nothing; its config is only its ``_target_``."""
