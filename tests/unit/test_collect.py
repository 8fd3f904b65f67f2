"""acdc-sweep-collect's grouping (runs/collect.py): a row per method as its label tells it, so
RigL's layer distributions, which share a method name, stay apart."""

from __future__ import annotations

import json

from acdc_exp.config.compose import compose_config
from acdc_exp.registries import SPARSITY
from acdc_exp.runs.collect import aggregate, find_summaries, markdown_table


def test_rigl_distributions_are_rows_of_their_own(tmp_path):
    def write(job: str, **summary) -> None:
        (tmp_path / job).mkdir()
        (tmp_path / job / "summary.json").write_text(json.dumps({"mask_type": "unstructured", "seed": 0, **summary}))

    labels = {}
    for distribution, grow in (("erk", "gradient"), ("uniform", "gradient"), ("uniform", "random")):
        cfg = compose_config(["sparsity=rigl", f"sparsity.distribution={distribution}", f"sparsity.grow={grow}"])
        labels[(distribution, grow)] = SPARSITY.build(cfg.sparsity).label
    assert list(labels.values()) == ["rigl-erk", "rigl-uniform", "set-uniform"]
    write("0", method="rigl", method_label="rigl-erk", sparsity_target=0.9, final_top1=80.0)
    write("1", method="rigl", method_label="rigl-erk", sparsity_target=0.9, final_top1=82.0, seed=1)
    write("2", method="rigl", method_label="rigl-uniform", sparsity_target=0.9, final_top1=79.0)
    write("3", method="gmp", sparsity_target=0.9, final_top1=81.0)  # a summary from before labels
    rows = {r.method: r for r in aggregate(find_summaries(tmp_path))}
    assert sorted(rows) == ["gmp", "rigl-erk", "rigl-uniform"]
    assert rows["rigl-erk"].mean_std("final_top1") == (81.0, 2**0.5) and rows["rigl-erk"].seeds == [0, 1]
    assert "| rigl-uniform | unstructured | 0.90 | 0 | 79.00 |" in markdown_table(list(rows.values()))
