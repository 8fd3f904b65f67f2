"""Which validation samples a process evaluates under DDP.

Training shards pad (DistributedSampler, FFCV's distributed order) so that every rank takes
the same number of steps, as DDP's gradient all-reduce needs. Evaluation must not: a padded
sample counts twice in top-1. So each rank takes every ``world_size``-th sample from its
rank on, and the shards together cover the set exactly once; their sizes differ by at most
one, which evaluation tolerates (it sums counts over ranks once, at the end).
"""

from __future__ import annotations

from typing import List


def val_shard(num_samples: int, rank: int, world_size: int) -> List[int]:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    return list(range(rank, num_samples, world_size))
