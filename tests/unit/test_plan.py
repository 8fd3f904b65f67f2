"""The pure step plan: AC/DC phases with SparseML semantics, LR functions, QAT switches."""

from __future__ import annotations

import math

import pytest

from acdc_exp.errors import ConfigError
from acdc_exp.plan import Plan
from acdc_exp.plan.lr import LRSegment, WeightDecaySegment, lr_at
from acdc_exp.plan.plan import QATSchedule
from acdc_exp.plan.sparsity_schedule import ACDCSchedule, ExplicitPhaseSchedule, GMPSchedule


def phase_runs(schedule, epochs: int):
    """[(start, end, phase)] over integer epochs."""
    runs = []
    for e in range(epochs):
        ph = schedule.phase(e)
        if runs and runs[-1][2] == ph:
            runs[-1] = (runs[-1][0], e + 1, ph)
        else:
            runs.append((e, e + 1, ph))
    return runs


def test_acdc_phase_table_matches_the_reference_recipe():
    s = ACDCSchedule(0.85, start_epoch=5, end_epoch=190, update_frequency=5)
    runs = phase_runs(s, 206)
    assert runs[0] == (0, 10, "dense")
    assert runs[1] == (10, 15, "compressed")
    assert runs[2] == (15, 20, "dense")
    assert runs[-2] == (175, 180, "dense")
    assert runs[-1] == (180, 206, "compressed")
    # strictly alternating 5-epoch phases in between
    for start, end, ph in runs[1:-1]:
        assert end - start == 5
        assert ph == ("compressed" if (start // 5) % 2 == 0 else "dense")
    assert s.update_epochs() == [float(e) for e in range(10, 190, 10)] + [185.0, 190.0]
    assert s.dense_member_epoch() == 180


def test_acdc_fractional_epochs_and_first_step_past_boundary():
    spe = 7  # boundaries do not fall on steps: updates happen at the first step at or past them
    plan = Plan(
        epochs=12,
        steps_per_epoch=spe,
        lr_segments=[LRSegment("constant", 0, None, 0.1)],
        weight_decay=0.0,
        sparsity=ACDCSchedule(0.9, start_epoch=1.5, end_epoch=9.5, update_frequency=2),
    )
    updates = [s for s in range(plan.total_steps) if plan.at(s).masks.update]
    expected = []
    for b in (3.5, 7.5, 9.5):  # compressed starts at 3.5 and 7.5 (k odd), and end_epoch
        expected.append(math.ceil(b * spe - 1e-9))
    assert updates == expected
    for s in updates:
        assert plan.epoch_of(s - 1) < plan.epoch_of(s)
        assert plan.at(s).masks.phase == "compressed"


def test_explicit_phases_express_the_paper_variant():
    s = ExplicitPhaseSchedule(0.9, [(4, 7, "compressed"), (7, 10, "dense"), (10, 13, "compressed"), (13, 30, "compressed")])
    assert [s.phase(e) for e in (0, 3.9, 4, 6.9, 7, 9.9, 10, 12, 13, 40)] == [
        "dense",
        "dense",
        "compressed",
        "compressed",
        "dense",
        "dense",
        "compressed",
        "compressed",
        "compressed",
        "compressed",
    ]
    assert s.update_epochs() == [4, 10, 13]  # back-to-back compressed phases recompute at their boundary
    assert s.dense_member_epoch() == 10


def test_gmp_cubic_ramp():
    s = GMPSchedule(0.9, init_sparsity=0.05, start_epoch=2, end_epoch=12, update_frequency=1)
    assert s.sparsity(1.9) == 0.0
    assert s.sparsity(2) == pytest.approx(0.05)
    assert s.sparsity(7.5) == pytest.approx(0.9 + (0.05 - 0.9) * (1 - 5 / 10) ** 3)  # held since epoch 7
    assert s.sparsity(12) == pytest.approx(0.9)
    assert s.sparsity(30) == pytest.approx(0.9)
    vals = [s.sparsity(e) for e in range(2, 13)]
    assert vals == sorted(vals)


def test_lr_segments_follow_sparseml_semantics():
    segs = [
        LRSegment("linear", 0, 5, 0.0512, 0.256),
        LRSegment("cosine", 5, 200, 0.256, 0.0),
        LRSegment("constant", 200, None, 5e-5),
        LRSegment("cosine", 202, 206, 5e-5, 0.0),
    ]
    assert lr_at(segs, 0) == pytest.approx(0.0512)
    assert lr_at(segs, 2.5) == pytest.approx((0.0512 + 0.256) / 2)
    assert lr_at(segs, 5) == pytest.approx(0.256)
    assert lr_at(segs, 102.5) == pytest.approx(0.128)
    assert lr_at(segs, 199.999) == pytest.approx(0.0, abs=1e-8)
    assert lr_at(segs, 200) == pytest.approx(5e-5)
    assert lr_at(segs, 201.9) == pytest.approx(5e-5)
    assert lr_at(segs, 204) == pytest.approx(2.5e-5)
    assert lr_at(segs, 206) == pytest.approx(0.0)


def test_qat_switches_and_weight_decay():
    plan = Plan(
        epochs=10,
        steps_per_epoch=4,
        lr_segments=[LRSegment("constant", 0, None, 0.1)],
        weight_decay=1e-4,
        weight_decay_segments=[WeightDecaySegment(3, 1e-5)],
        qat=QATSchedule(True, start_epoch=7, disable_observer_epoch=8, freeze_bn_stats_epoch=9),
    )
    rows = [plan.at(s) for s in range(plan.total_steps)]
    assert [r.step for r in rows if r.qat.start] == [28]
    assert all(r.qat.active == (r.epoch >= 7) for r in rows)
    assert all(r.qat.observers_frozen == (r.epoch >= 8) for r in rows)
    assert all(r.qat.bn_frozen == (r.epoch >= 9) for r in rows)
    assert {r.phase_name for r in rows if r.epoch >= 7} == {"qat"}
    assert rows[11].weight_decay == 1e-4 and rows[12].weight_decay == 1e-5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start_epoch=5, end_epoch=5, update_frequency=5), "end_epoch=5"),
        (dict(start_epoch=0, end_epoch=10, update_frequency=0), "update_frequency=0"),
    ],
)
def test_bad_schedules_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        ACDCSchedule(0.9, **kwargs)
    assert "\n" not in str(info.value)


def test_negative_lr_is_refused():
    with pytest.raises(ConfigError, match="init_lr=-0.1"):
        LRSegment("constant", 0, None, -0.1)


def test_regrowth_epochs_and_dense_phase_lr_ramp():
    acdc = ACDCSchedule(0.9, start_epoch=2, end_epoch=26, update_frequency=3)
    assert acdc.regrowth_epochs() == [8.0, 14.0, 20.0]  # not 2: nothing was pruned before it
    paper = ExplicitPhaseSchedule(
        0.9, [(4, 7, "compressed"), (7, 10, "dense"), (10, 13, "compressed"), (13, 16, "dense"), (16, 30, "compressed")]
    )
    assert paper.regrowth_epochs() == [7.0, 13.0]
    assert GMPSchedule(0.9, 0.05, 2, 20, 1).regrowth_epochs() == []
    seg = [LRSegment("constant", 0.0, None, 0.2, 0.2)]
    plain = Plan(epochs=30, steps_per_epoch=10, lr_segments=seg, weight_decay=0.0, sparsity=acdc)
    ramp = Plan(epochs=30, steps_per_epoch=10, lr_segments=seg, weight_decay=0.0, sparsity=acdc, dense_phase_warmup_epochs=1.0)
    assert [round(ramp.at(s).lr, 6) for s in (79, 80, 84, 89, 90)] == [0.2, 0.02, 0.1, 0.2, 0.2]
    assert all(plain.at(s).lr == 0.2 for s in range(300))
    # only the ramp's steps differ; the pre-start dense phase (epochs 0-2) has none
    differ = sorted({s // 10 for s in range(300) if ramp.at(s).lr != plain.at(s).lr})
    assert differ == [8, 14, 20]
    with pytest.raises(ConfigError, match="dense_phase_warmup_epochs=-1.0"):
        Plan(epochs=3, steps_per_epoch=2, lr_segments=seg, weight_decay=0.0, dense_phase_warmup_epochs=-1.0)


@pytest.mark.parametrize(
    "overrides,steps_per_epoch",
    [
        ([], 22),
        (["trainer.epochs=1"], 22),
        (["sparsity=gmp"], 7),
        (["sparsity.update_frequency=0.7"], 3),
        (["sparsity=acdc_paper"], 5),
    ],
)
def test_epoch_table_marks_the_epochs_whose_steps_update_masks(overrides, steps_per_epoch):
    """The table's mask column is read per epoch, not step by step: it must say what the steps say."""
    from acdc_exp.config.compose import compose_config, finalize

    plan = Plan.from_config(finalize(compose_config(overrides)), steps_per_epoch)
    spe = steps_per_epoch
    per_step = [any(plan.at(s).masks.update for s in range(e * spe, (e + 1) * spe)) for e in range(plan.epochs)]
    assert [row["mask_update"] for row in plan.epoch_table()] == per_step
    assert any(per_step)


def test_rigl_updates_every_delta_t_steps_before_t_end_with_the_cosine_drop_fraction():
    from acdc_exp.cli.schedule import format_table
    from acdc_exp.sparsity.methods.rigl import RiglSchedule

    # 10 epochs of 30 steps: T_end = int(0.75 * 300) = 225; an update every 20 steps before it
    plan = Plan(
        epochs=10,
        steps_per_epoch=30,
        lr_segments=[LRSegment("constant", 0.0, None, 0.1)],
        weight_decay=0.0,
        sparsity=RiglSchedule(0.9, delta_t=20, alpha=0.3, end_fraction=0.75),
    )
    steps = [plan.at(s) for s in range(plan.total_steps)]
    assert [p.step for p in steps if p.masks.update] == list(range(0, 225, 20))
    assert all(p.masks.phase == "compressed" and p.masks.sparsity == 0.9 for p in steps)
    fractions = {p.step: p.masks.drop_fraction for p in steps if p.masks.update}
    assert fractions[0] == 0.3 and fractions[220] == pytest.approx(0.15 * (1 + math.cos(math.pi * 220 / 225)))
    assert all(a > b for a, b in zip(list(fractions.values()), list(fractions.values())[1:]))  # decays
    assert all(p.masks.drop_fraction == 0.0 and not p.masks.dense_gradient for p in steps if not p.masks.update)
    assert all(p.masks.dense_gradient for p in steps if p.masks.update)
    # per epoch: how many updates, and the first one's fraction (acdc-schedule's masks column)
    table = plan.epoch_table()
    assert [r["mask_updates"] for r in table] == [2, 1, 2, 1, 2, 1, 2, 1, 0, 0]
    assert table[1]["drop_fraction"] == fractions[40] and table[8]["drop_fraction"] == 0.0
    shown = format_table(plan).splitlines()
    assert "2x f=0.300" in shown[1] and "1x f=" in shown[2] and "x f=" not in shown[9]
