"""Per-step cost of AC/DC-masked training against dense training, ResNet-50 on CPU.

Both steps are the trainer's own step (acdc_exp/training/step.py::train_step, in fp32 without
QAT), timed around each sparsifier hook:

    sparsifier.begin_step(p)  # p: compressed, no mask update
    forward, backward
    sparsifier.mask_gradients(); optimizer.step(); sparsifier.end_step()

with block4 masks at 85% on the 52 layer1..layer4 convs of the reference experiment
(experiment=resnet50_imagenet_acdc85_quant, composed as acdc-train composes it). The dense step is forward, backward
and the SGD step (its sparsifier selects no weight). Two models with the same initial weights and their own optimizers run in
alternating rounds (dense/masked, then masked/dense: ABBA) so that slow drift of the machine's
load falls on both equally. The masked model trains dense for two steps first, so the masks
prune weights with SGD momentum; the rounds run twice: while that stale momentum decays (the
first ``settle_steps`` steps of a phase: the hooks mask gradients and weights), then after it
has settled (sparsity/stale_momentum.py: gradients only). Reported: median step times, the
median of the per-round ratios, the hook time measured inside the masked steps (a low-noise
view of the same overhead), their average over a reference 5-epoch phase, and, separately, a
step that recomputes the masks (once per compressed phase).

Each setting is stored in bench/results/step_overhead.json under
runs["threads{T}_batch{B}_res{R}"]. The machine is shared: per-step process CPU time is
recorded next to wall time, and ``uptime`` before and after.

    python bench/bench_step_overhead.py [--batch 16] [--res 224] [--rounds 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import torch
from torch import nn

from acdc_exp.config.compose import compose_config
from acdc_exp.config.precheck import REFERENCE
from acdc_exp.machine import describe
from acdc_exp.models import build_model
from acdc_exp.plan import StepPlan
from acdc_exp.quantization import NoQuantization
from acdc_exp.registries import SPARSITY
from acdc_exp.sparsity.methods.base import SparsityMethod
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.precision import full_precision
from acdc_exp.training.step import train_step

GOAL_PCT = 2.0
# a 5-epoch compressed phase of the reference job: ImageNet's 1,281,167 images at global batch 256
REFERENCE_PHASE_STEPS = 5 * math.ceil(1_281_167 / 256)
ROOT = Path(__file__).resolve().parent.parent


def reference_method() -> SparsityMethod:
    """The reference job's sparsity method as acdc-train builds it (its layers, mask type and
    target come from the composed experiment, not from a copy here)."""
    return SPARSITY.build(compose_config([f"experiment={REFERENCE}"]).sparsity)


def _step_plan(update_masks: bool, sparsity: float, step: int = 0, phase: str = "compressed") -> StepPlan:
    # lr 1e-3: the same batch is seen over and over, and a diverging loss (inf/NaN) would
    # distort timings; weight decay as the experiment's
    return StepPlan.make(phase, sparsity, update_masks=update_masks, step=step, lr=1e-3, weight_decay=1e-5)


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    # the experiment's optimizer (SGD, momentum 0.9, Nesterov); lr and weight decay come from the plan
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-5)


class Runner:
    """One model + optimizer, as the trainer's step sees them (training/step.py's StepParts):
    fp32, no QAT. The dense baseline's sparsifier selects no weight, so its hooks do nothing."""

    def __init__(self, model: nn.Module, sparsifier: Sparsifier, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model = self.forward = model
        self.optimizer = _optimizer(model)
        self.sparsifier = sparsifier
        sparsifier.attach_optimizer(self.optimizer)
        self.quantizer = NoQuantization()
        self.precision = full_precision(torch.device("cpu"))
        self.scaler = self.precision.grad_scaler()  # disabled in fp32: scale() and step() pass through
        self.masked = bool(sparsifier.names)
        self.x, self.y = x, y
        self.criterion = nn.CrossEntropyLoss()
        self.hook_times: List[float] = []  # seconds spent in sparsifier hooks, per masked step
        self.last_loss = float("nan")
        self.hook_cpu_times: List[float] = []
        self.cpu_times: List[float] = []  # process CPU seconds per step (less hurt by descheduling)
        self._hooks = [0.0, 0.0]  # this step's hook wall and CPU seconds

    def start_qat(self, p: StepPlan) -> None:
        raise RuntimeError("this benchmark's plans never start QAT")

    @contextlib.contextmanager
    def _timed(self, hook: str) -> Iterator[None]:
        t, c = time.perf_counter(), time.process_time()
        yield
        self._hooks[0] += time.perf_counter() - t
        self._hooks[1] += time.process_time() - c

    def step(self, plan: StepPlan) -> float:
        self._hooks = [0.0, 0.0]
        cpu = time.process_time()
        start = time.perf_counter()
        loss, _ = train_step(self, self.x, self.y, plan, hook_timer=self._timed)
        elapsed = time.perf_counter() - start
        self.cpu_times.append(time.process_time() - cpu)
        self.last_loss = loss.item()
        if self.masked:
            self.hook_times.append(self._hooks[0])
            self.hook_cpu_times.append(self._hooks[1])
        return elapsed


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def hook_forms(params: List[torch.Tensor], masks: List[torch.Tensor], repeats: int) -> Dict[str, float]:
    """One hook pass (every masked weight once) in three forms, median seconds: the bool
    ``masked_fill_`` the hooks used before, ``mul_`` by a float 0/1 mask per tensor, and the
    same multiply batched with ``torch._foreach_mul_`` (the shipped form)."""
    pruned = [~m for m in masks]
    keep = [m.to(p.dtype) for p, m in zip(params, masks)]

    def fill() -> None:
        for p, m in zip(params, pruned):
            p.masked_fill_(m, 0)

    def mul() -> None:
        for p, k in zip(params, keep):
            p.mul_(k)

    with torch.no_grad():
        return {
            "masked_fill_bool": _median_time(fill, repeats),
            "mul_float": _median_time(mul, repeats),
            "foreach_mul_float": _median_time(lambda: torch._foreach_mul_(params, keep), repeats),
        }


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _pct(a: float, b: float) -> float:
    return 100.0 * (a / b - 1.0)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    # the first ~3 steps of a fresh process are several times slower (allocator and kernel warm-up)
    parser.add_argument("--warmup", type=int, default=4, help="warm-up steps per model")
    parser.add_argument("--rounds", type=int, default=12, help="ABBA rounds: 2 dense + 2 masked steps each")
    parser.add_argument("--recompute-repeats", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "step_overhead.json"))
    return parser.parse_args()


def _abba(label: str, dense: Runner, masked: Runner, rounds: int, dense_phase: StepPlan, keep: StepPlan) -> tuple:
    """``rounds`` rounds of dense, masked, masked, dense (the mirror on odd rounds): (dense step
    times, masked step times, per-round masked/dense ratios); clears the runners' hook timings."""
    for r in (dense, masked):
        r.hook_times.clear(), r.hook_cpu_times.clear(), r.cpu_times.clear()
    d_t: List[float] = []
    m_t: List[float] = []
    rs: List[float] = []
    for r in range(rounds):
        order = ("d", "m", "m", "d") if r % 2 == 0 else ("m", "d", "d", "m")
        got: Dict[str, List[float]] = {"d": [], "m": []}
        for who in order:
            got[who].append(dense.step(dense_phase) if who == "d" else masked.step(keep))
        d_t += got["d"]
        m_t += got["m"]
        rs.append(sum(got["m"]) / sum(got["d"]))
        print(
            f"{label} round {r + 1}/{rounds}: dense {statistics.mean(got['d']):.3f}s masked "
            f"{statistics.mean(got['m']):.3f}s ({_pct(rs[-1], 1.0):+.2f}%)",
            flush=True,
        )
    return d_t, m_t, rs


def _settle(masked: Runner, sparsity: float) -> None:
    """What ``settle_steps`` SGD steps do to the pruned entries' momentum (buf <- 0.9 * buf);
    then the sparsifier's own check at that step finds it subnormal and drops the weight pass."""
    sparsifier = masked.sparsifier
    settle_steps = sparsifier.stale_momentum.check_at
    momentum = masked.optimizer.param_groups[0]["momentum"]
    named_params = dict(masked.model.named_parameters())
    with torch.no_grad():
        for n, m in sparsifier.masks.items():
            buf = masked.optimizer.state[named_params[n]]["momentum_buffer"]
            buf.mul_(torch.where(m, 1.0, momentum**settle_steps))
    sparsifier.begin_step(_step_plan(False, sparsity, step=settle_steps))
    assert sparsifier.stale_momentum.settled


def _measure(args: argparse.Namespace, method: SparsityMethod) -> Dict[str, Any]:
    """Every timing of the benchmark, by name (the raw material of the result)."""
    sparsity = method.target_sparsity
    torch.manual_seed(0)
    dense_model = build_model("resnet50", num_classes=1000).train()
    masked_model = build_model("resnet50", num_classes=1000).train()
    masked_model.load_state_dict(dense_model.state_dict())
    x = torch.randn(args.batch, 3, args.res, args.res)
    y = torch.randint(0, 1000, (args.batch,))
    sparsifier = method.sparsifier(masked_model)
    assert len(sparsifier.names) == 52, len(sparsifier.names)
    dense = Runner(dense_model, Sparsifier(dense_model, params=[]), x, y)
    masked = Runner(masked_model, sparsifier, x, y)
    keep, recompute = _step_plan(False, sparsity), _step_plan(True, sparsity)
    m: Dict[str, Any] = {"uptime_before": _uptime(), "load_before": os.getloadavg()}
    print(f"before: {m['uptime_before']}", flush=True)
    # dense steps first, so that the masks prune weights that carry SGD momentum, as in a run
    dense_phase = _step_plan(False, 0.0, phase="dense")
    for _ in range(2):
        dense.step(dense_phase)
        masked.step(dense_phase)
    # the first compressed step computes the masks; until the pruned entries' stale momentum
    # has decayed (sparsity/stale_momentum.py) the hooks make two passes
    m["first_masked"] = masked.step(recompute)
    m["settle_steps"] = sparsifier.stale_momentum.check_at
    for _ in range(args.warmup):
        dense.step(dense_phase)
        masked.step(keep)
    assert not sparsifier.stale_momentum.settled
    m["two_pass_dense"], m["two_pass_masked"], _ = _abba(
        "two passes (phase start)", dense, masked, args.rounds, dense_phase, keep
    )
    m["two_pass_hooks"] = statistics.median(masked.hook_times)
    m["hooks_two_pass_alone"] = _median_time(lambda: (sparsifier.mask_gradients(), sparsifier.end_step()), 20)
    _settle(masked, sparsity)
    m["dense_t"], m["masked_t"], m["ratios"] = _abba("one pass (settled)", dense, masked, args.rounds, dense_phase, keep)
    m["dense_cpu"], m["masked_cpu"] = list(dense.cpu_times), list(masked.cpu_times)
    m["hook_med"] = statistics.median(masked.hook_times)
    m["hook_cpu_med"] = statistics.median(masked.hook_cpu_times)
    m["hooks_only"] = _median_time(lambda: (sparsifier.mask_gradients(), sparsifier.end_step()), 20)
    # a step that recomputes the masks (start of every compressed phase), and the recompute alone
    m["recompute_steps"] = [masked.step(recompute) for _ in range(args.recompute_repeats)]
    m["recompute_only"] = _median_time(lambda: sparsifier.begin_step(recompute), args.recompute_repeats)
    named = dict(masked_model.named_parameters())
    m["forms"] = hook_forms([named[n].detach() for n in sparsifier.names], [sparsifier.masks[n] for n in sparsifier.names], 20)
    m["uptime_after"], m["load_after"] = _uptime(), os.getloadavg()
    print(f"after: {m['uptime_after']}", flush=True)
    zeros = sum(int((p == 0).sum()) for n, p in named.items() if n in sparsifier.names)
    m["achieved_sparsity"] = zeros / sum(p.numel() for n, p in named.items() if n in sparsifier.names)
    m["masked_layers"] = len(sparsifier.names)
    m["last_loss_dense"], m["last_loss_masked"] = dense.last_loss, masked.last_loss
    return m


def _result(args: argparse.Namespace, method: SparsityMethod, m: Dict[str, Any]) -> Dict[str, Any]:
    """The stored record of one setting: settings, medians and spreads, machine and load."""
    dense_t, masked_t = m["dense_t"], m["masked_t"]
    d_med, m_med = statistics.median(dense_t), statistics.median(masked_t)
    ratio_pcts = sorted(_pct(r, 1.0) for r in m["ratios"])
    q = statistics.quantiles(ratio_pcts, n=4) if len(ratio_pcts) >= 2 else [ratio_pcts[0]] * 3
    dense_cpu, masked_cpu = statistics.median(m["dense_cpu"]), statistics.median(m["masked_cpu"])
    two_pass_dense = statistics.median(m["two_pass_dense"])
    settle, hook_med = m["settle_steps"], m["hook_med"]
    return {
        "bench": "step_overhead",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": "resnet50 (num_classes=1000, train mode)",
        "batch": args.batch,
        "res": args.res,
        "threads": args.threads,
        "mask_type": method.mask_type,
        "sparsity": method.target_sparsity,
        "masked_layers": m["masked_layers"],
        "achieved_sparsity": m["achieved_sparsity"],
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "steps_per_mode": len(dense_t),
        "dense_step_median_s": d_med,
        "masked_step_median_s": m_med,
        "overhead_pct_of_medians": _pct(m_med, d_med),
        "overhead_pct_round_ratio_median": statistics.median(ratio_pcts),
        "overhead_pct_round_ratio_iqr": [q[0], q[2]],
        "overhead_pct_round_ratio_min_max": [ratio_pcts[0], ratio_pcts[-1]],
        "dense_step_cpu_median_s": dense_cpu,
        "masked_step_cpu_median_s": masked_cpu,
        "overhead_pct_cpu_time": _pct(masked_cpu, dense_cpu),
        "hooks_in_step_median_s": hook_med,
        "hooks_in_step_cpu_median_s": m["hook_cpu_med"],
        "overhead_pct_hooks_cpu": 100.0 * m["hook_cpu_med"] / dense_cpu,
        "hooks_alone_median_s": m["hooks_only"],
        "hook_pass_forms_median_s": m["forms"],
        "hook_passes_per_step": "1 after the stale momentum settles, 2 before (sparsity/stale_momentum.py)",
        "settle_steps": settle,
        "two_pass_dense_step_median_s": two_pass_dense,
        "two_pass_masked_step_median_s": statistics.median(m["two_pass_masked"]),
        "two_pass_hooks_in_step_median_s": m["two_pass_hooks"],
        "two_pass_overhead_pct_hooks": 100.0 * m["two_pass_hooks"] / two_pass_dense,
        "two_pass_hooks_alone_median_s": m["hooks_two_pass_alone"],
        "reference_phase_steps": REFERENCE_PHASE_STEPS,
        "reference_phase_overhead_pct_hooks": 100.0
        * (settle * m["two_pass_hooks"] + max(REFERENCE_PHASE_STEPS - settle, 0) * hook_med)
        / (REFERENCE_PHASE_STEPS * d_med),
        "overhead_pct_hooks": 100.0 * hook_med / d_med,
        "dense_step_min_max_s": [min(dense_t), max(dense_t)],
        "masked_step_min_max_s": [min(masked_t), max(masked_t)],
        "first_masked_step_s": m["first_masked"],
        "recompute_step_median_s": statistics.median(m["recompute_steps"]),
        "recompute_only_median_s": m["recompute_only"],
        "recompute_step_extra_pct": _pct(statistics.median(m["recompute_steps"]), d_med),
        "goal_pct": GOAL_PCT,
        "uptime_before": m["uptime_before"],
        "uptime_after": m["uptime_after"],
        "load_avg_1m_before": m["load_before"][0],
        "load_avg_1m_after": m["load_after"][0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": describe(),
        "last_loss_dense": m["last_loss_dense"],
        "last_loss_masked": m["last_loss_masked"],
        "dense_steps_s": dense_t,
        "masked_steps_s": masked_t,
    }


def _save(out: Path, key: str, result: Dict[str, Any]) -> None:
    """One file holds every (threads, batch, res) measured; re-running a setting replaces it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
    runs[key] = result
    out.write_text(json.dumps({"bench": "step_overhead", "goal_pct": GOAL_PCT, "runs": runs}, indent=2) + "\n")


def _print(args: argparse.Namespace, r: Dict[str, Any]) -> None:
    d_med, m_med = r["dense_step_median_s"], r["masked_step_median_s"]
    iqr, span = r["overhead_pct_round_ratio_iqr"], r["overhead_pct_round_ratio_min_max"]
    print(f"ResNet-50, batch {args.batch} at {args.res}px, {args.threads} threads, {r['steps_per_mode']} steps per mode")
    print("| step | median s | vs dense |")
    print("|---|---|---|")
    print(f"| dense (fwd, bwd, SGD) | {d_med:.3f} | - |")
    print(f"| AC/DC compressed, masks kept | {m_med:.3f} | {_pct(m_med, d_med):+.2f}% |")
    print(f"| AC/DC compressed, masks recomputed | {r['recompute_step_median_s']:.3f} | {r['recompute_step_extra_pct']:+.2f}% |")
    print(
        f"process CPU time per step: dense {r['dense_step_cpu_median_s']:.3f}s masked "
        f"{r['masked_step_cpu_median_s']:.3f}s ({r['overhead_pct_cpu_time']:+.2f}%)"
    )
    print(
        f"per-round ratio: median {r['overhead_pct_round_ratio_median']:+.2f}%, IQR "
        f"[{iqr[0]:+.2f}, {iqr[1]:+.2f}]%, range [{span[0]:+.2f}, {span[1]:+.2f}]%"
    )
    hook_med, hook_cpu = r["hooks_in_step_median_s"], r["hooks_in_step_cpu_median_s"]
    print(
        f"hooks inside the step: {hook_med * 1e3:.1f} ms wall = {r['overhead_pct_hooks']:.2f}% of a dense step; "
        f"{hook_cpu * 1e3:.1f} ms CPU = {r['overhead_pct_hooks_cpu']:.2f}% of a dense step's CPU time "
        f"(goal <= {GOAL_PCT}%)"
    )
    print(
        f"hooks alone (warm, outside a step): {r['hooks_alone_median_s'] * 1e3:.1f} ms; "
        f"mask recompute alone {r['recompute_only_median_s'] * 1e3:.0f} ms"
    )
    forms = r["hook_pass_forms_median_s"]
    print("one pass over the masked weights: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in forms.items()))
    print(
        f"first {r['settle_steps']} steps of a compressed phase (two passes): hooks "
        f"{r['two_pass_hooks_in_step_median_s'] * 1e3:.1f} ms = {r['two_pass_overhead_pct_hooks']:.2f}% of a dense step; "
        f"over a reference 5-epoch phase ({REFERENCE_PHASE_STEPS} steps): {r['reference_phase_overhead_pct_hooks']:.2f}%"
    )


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    method = reference_method()
    result = _result(args, method, _measure(args, method))
    out = Path(args.out)
    _save(out, f"threads{args.threads}_batch{args.batch}_res{args.res}", result)
    _print(args, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
