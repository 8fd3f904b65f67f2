"""Records that one layer hands to another: defined below both, so that neither imports the
other (the sparsifier returns a ``MaskUpdate``; the loggers print, plot and log it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass
class MaskUpdate:
    """What a mask recomputation did, for logs and the mask-stability analysis."""

    step: int
    epoch: float
    target_sparsity: float
    layer_sparsity: Dict[str, float]
    global_sparsity: float
    # fraction of mask entries that differ from the previous compressed phase's masks
    # (None for the first mask computation)
    changed_fraction: Optional[float] = None
    layer_changed: Dict[str, float] = field(default_factory=dict)
    # RigL/SET: the fraction of each layer's active weights this update replaced (f(t))
    drop_fraction: Optional[float] = None
    # all masks' checksum, the same on every rank (sparsity/rank_agreement.py checked it)
    checksum: Optional[str] = None
