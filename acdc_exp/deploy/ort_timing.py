"""Time one ONNX file in onnxruntime: the median of repeated runs on a fixed random batch."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from acdc_exp.deploy.onnx_check import ort_session


@dataclass
class Timing:
    """Wall times of ``batch``-image runs; the median decides latency and throughput."""

    batch: int
    times_s: List[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def latency_ms(self) -> float:
        return 1e3 * self.median_s

    @property
    def images_per_s(self) -> float:
        return self.batch / self.median_s


def random_images(batch: int, res: int, seed: int) -> np.ndarray:
    """The benchmark's input; speed does not depend on the values."""
    return np.random.default_rng(seed).standard_normal((batch, 3, res, res), dtype=np.float32)


def time_ort(path: Path, *, threads: int, runs: Sequence[Tuple[int, int]], warmup: int, res: int, seed: int = 0) -> List[Timing]:
    """One session (all graph optimizations on, ``threads`` intra-op threads, one inter-op
    thread) times each ``(batch, repeats)`` of ``runs`` in turn."""
    sess = ort_session(path, threads=threads)
    name = sess.get_inputs()[0].name
    timings = []
    for batch, repeats in runs:
        feed = {name: random_images(batch, res, seed)}
        for _ in range(warmup):
            sess.run(None, feed)
        timing = Timing(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(None, feed)
            timing.times_s.append(time.perf_counter() - start)
        timings.append(timing)
    return timings
