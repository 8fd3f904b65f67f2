"""The benchmarks take the reference job from the package (the composed experiment and its
sparsity method), not from copies of its settings: a config change cannot leave a benchmark
measuring another job, or failing only when someone runs it."""

from __future__ import annotations

import sys

from conftest import REPO

from acdc_exp.models import build_model

sys.path.insert(0, str(REPO / "bench"))

import bench_checkpoint  # noqa: E402  (bench/ is a folder of scripts)
from bench_step_overhead import reference_method  # noqa: E402


def test_benchmarks_prune_the_reference_jobs_layers_as_it_does():
    method = reference_method()
    assert (method.name, method.mask_type, method.target_sparsity) == ("acdc", "block4", 0.85)
    assert len(method.sparsifier(build_model("resnet50", num_classes=1000)).names) == 52
    assert bench_checkpoint.reference_method is reference_method
