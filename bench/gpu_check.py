"""The reference job's GPU paths in one command, as the trainer runs them: ResNet-50 at 224 px
with the per-GPU batch (32 of the global 256 on 8 GPUs) and the whole 256 on one GPU; AMP
and channels_last; cuDNN autotuning set by the trainer's configure_determinism; SGD from
the trainer's build_optimizer (fused on CUDA). Step kinds: dense, compressed (block4 85%)
with the sparsifier's two-pass hooks (first window after a mask update) and one-pass hooks
(stale momentum settled), QAT in fp32 with observers on and frozen; each eager and with
torch.compile. Each configuration: warm-up, then several timing windows (median img/s and
spread) and host syncs per step (torch.cuda.set_sync_debug_mode). Pass/fail items: int8 vs
fake quant (tests/e2e/test_qat_train.py's thresholds), the QAT steps, a resume continuing with the
same loss, and trainer.deterministic at a mask update. A time budget skips what would not fit.

    python bench/gpu_check.py                      # on a CUDA machine: < 8 minutes on one H100/H200
    python bench/gpu_check.py --device cpu --model resnet_small --classes 10 --batch 8 --res 32 \
        --windows 2 --window-s 0 --min-window-steps 2 --warmup 1 --no-compile   # the CPU path (tests)

Needs torch, torchvision, omegaconf (hydra for build_optimizer, else the same SGD by hand): no
data, no network, W&B or FFCV. Synthetic uint8 batches live on the device and are normalized
every step as DataModule.prepare does (data loading is not measured). Writes --out (JSON) and
prints a table. Exit status 1 when a check fails or a measurement errors; skips do not fail.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the budget counts from process start, imports included

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Dict, List, Optional  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # a plain checkout, installed or not

import torch  # noqa: E402
from gpu_check_steps import FLOAT_KINDS, QAT_KINDS, Budget, Estimates, Stepper, measure_group, plan  # noqa: E402

from acdc_exp.machine import describe  # noqa: E402
from acdc_exp.quantization.compare import compare_int8_to_fake_quant  # noqa: E402
from acdc_exp.training.precision import configure_determinism, resolve_precision  # noqa: E402

# tests/e2e/test_qat_train.py::test_int8_model_computes_what_its_qat_model_computes
INT8_MAX_FRAC_OVER_ONE_STEP = 0.005
INT8_MIN_TOP1_AGREEMENT = 0.97
PRE_QAT_LR = 0.1  # within the reference's float lr range (0.05-0.256): the batch is fitted, top-1 margins are clear
CHECKS = ("int8_vs_fake_quant", "qat_training", "resume", "deterministic")
CHILD_START_S = 20.0  # a fresh process: imports, CUDA context, model build


def qat_int8(args: Any, device: torch.device, batch: int) -> Dict[str, Dict[str, Any]]:
    """A fitted compressed model switched to QAT (fp32, no scaler), trained with observers on,
    then frozen; converted to int8 on the CPU and compared layer by layer on its batch."""
    s = Stepper(args, device, batch)
    for _ in range(args.pre_qat_steps):  # also settles BN running statistics on the batch
        s.step(plan("dense", lr=PRE_QAT_LR))
    s.update_masks(step=args.pre_qat_steps)
    step = s.settle()
    losses = [float(s.step(plan("compressed", step=step, qat=True))) for _ in range(args.qat_steps)]
    fp32 = s.precision.dtype is None and not s.scaler.is_enabled()
    losses += [float(s.step(plan("compressed", step=step, qat=True, frozen=True))) for _ in range(2)]
    x = s.images().float().cpu()
    model = s.model.cpu().eval()
    report = compare_int8_to_fake_quant(model, s.quantizer.convert(model), x)
    worst = max(report["layers"], key=lambda r: r["frac_over_one_step"])
    masks_hold = all(bool((model.get_parameter(n)[~m.cpu()] == 0).all()) for n, m in s.sparsifier.masks.items())
    finite = all(v == v and abs(v) != float("inf") for v in losses)
    agreement = report["top1_agreement"]
    return {
        "int8_vs_fake_quant": {
            "ok": worst["frac_over_one_step"] < INT8_MAX_FRAC_OVER_ONE_STEP and agreement >= INT8_MIN_TOP1_AGREEMENT,
            "worst_frac_over_one_step": worst["frac_over_one_step"],
            "worst_layer": worst["layer"],
            "worst_max_steps": worst["max_steps"],
            "top1_agreement": agreement,
            "samples": report["samples"],
            "int8_engine": s.quantizer.int8_engine() or s.quantizer.backend,
            "thresholds": {"frac_over_one_step_lt": INT8_MAX_FRAC_OVER_ONE_STEP, "top1_agreement_ge": INT8_MIN_TOP1_AGREEMENT},
        },
        "qat_training": {
            "ok": finite and masks_hold and fp32,
            "losses_finite": finite,
            "masks_hold": masks_hold,
            "fp32_without_scaler": fp32,
            "last_loss": losses[-1],
        },
    }


def resume(args: Any, device: torch.device, batch: int) -> Dict[str, Any]:
    """Steps into a compressed phase, save what a checkpoint holds, 2 more; reload into a
    fresh run: the same losses."""
    a = Stepper(args, device, batch)
    a.step(plan("dense"))
    a.update_masks(step=1)
    p = plan("compressed", step=1)
    a.step(p)
    keys = ("model", "opt", "scaler", "sparsifier")
    state = copy.deepcopy(
        dict(zip(keys, (a.model.state_dict(), a.optimizer.state_dict(), a.scaler.state_dict(), a.sparsifier.state_dict())))
    )
    want = [float(a.step(p)) for _ in range(2)]
    b = Stepper(args, device, batch)
    b.model.load_state_dict(state["model"])
    b.optimizer.load_state_dict(state["opt"])
    if state["scaler"]:
        b.scaler.load_state_dict(state["scaler"])
    b.sparsifier.load_state_dict(state["sparsifier"])
    b.mask_step = 1
    got = [float(b.step(p)) for _ in range(2)]
    diff = max(abs(x - y) for x, y in zip(want, got))
    return {"ok": diff <= 1e-3 * max(1.0, abs(want[0])), "losses": want, "resumed_losses": got, "max_abs_diff": diff}


def deterministic(argv: List[str], budget: Budget) -> Optional[Dict[str, Any]]:
    """trainer.deterministic=true in a fresh process (cuBLAS reads its workspace setting at its
    first call): a mask update and compressed steps, twice, to the same masks and losses."""
    proc = _run_child([*argv, "--only-deterministic"], timeout=max(budget.left(), 1.0))
    if proc is None:  # ran past the budget: skipped, not failed
        return None
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _deterministic_child(args: Any, device: torch.device) -> None:
    configure_determinism(True, device)
    runs = []
    for _ in range(2):
        s = Stepper(args, device, min(args.batch))
        s.step(plan("dense"))
        s.update_masks(step=1)
        losses = [float(s.step(plan("compressed", step=1))) for _ in range(2)]
        masks = {n: m.cpu() for n, m in s.sparsifier.masks.items()}
        runs.append((losses, masks))
    same_masks = runs[0][1].keys() == runs[1][1].keys() and all(torch.equal(m, runs[1][1][n]) for n, m in runs[0][1].items())
    print(json.dumps({"ok": runs[0][0] == runs[1][0] and same_masks, "same_masks": same_masks, "losses": [r[0] for r in runs]}))


def _run_child(cmd_args: List[str], timeout: float) -> Optional[subprocess.CompletedProcess]:
    """This script in a fresh process, in its own process group; None when it ran past
    ``timeout`` (then the group, which holds any compile workers it started, is killed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *cmd_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _compiled_groups(args: Any) -> List[tuple]:
    # compiled float kinds at every batch before the QAT graphs (more graph breaks, longer compiles)
    return [(family, b) for family in ("float", "qat") for b in sorted(args.batch)]


def compiled_child(args: Any, device: torch.device, budget: Budget, est: Estimates) -> None:
    """The torch.compile'd configurations, each row written to --child-compiled as it is done."""
    path = Path(args.child_compiled)

    def write(record: Dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    for family, batch in _compiled_groups(args):
        torch._dynamo.reset()  # one static batch shape per compile, as in a run
        n_skipped = len(budget.skipped)
        try:
            measure_group(args, device, family, batch, "compiled", budget, est, lambda row: write({"row": row}))
        except Exception as exc:  # reported; the next group goes on
            write({"error": {"item": f"compiled batch {batch} {family}", "error": _one_line(exc)}})
        for skipped in budget.skipped[n_skipped:]:
            write({"skipped": skipped})


def compiled(args: Any, argv: List[str], budget: Budget, est: Estimates, out: Dict[str, Any]) -> None:
    names = [f"compiled batch {b} {k}" for fam, b in _compiled_groups(args) for k in (QAT_KINDS if fam == "qat" else FLOAT_KINDS)]
    need = CHILD_START_S + est.kind("compiled", min(args.batch), "float", first=True)
    if need > budget.left():
        for name in names:
            budget.skip(name, f"time budget: the compiled runs need ~{need:.0f} s to start, {max(budget.left(), 0):.0f} s left")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        child_args = [*argv, "--child-compiled", str(path), "--budget-s", f"{budget.left() - 5.0:.1f}"]
        proc = _run_child([*child_args, "--known-steps", json.dumps(est.step_s)], timeout=max(budget.left(), 1.0))
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = set()
    for rec in records:
        if "row" in rec:
            out["rows"].append(rec["row"])
            done.add(f"compiled batch {rec['row']['batch']} {rec['row']['kind']}")
        elif "skipped" in rec:
            budget.skipped.append(rec["skipped"])
            done.add(rec["skipped"]["item"])
        else:
            out["errors"].append(rec["error"])
    if proc is not None and proc.returncode != 0:
        out["errors"].append({"item": "compiled runs", "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
    if proc is None:
        why = "time budget: killed mid-run (a compile or step ran past the budget)"
    else:
        why = "not run: its group or the compiled process failed (see errors)"
    for name in names:
        if name not in done:
            budget.skip(name, why)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _guarded(name: str, fn: Callable[[], Any], out: Dict[str, Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # the check goes on; the failure is reported in the table and JSON
        out["errors"].append({"item": name, "error": _one_line(exc)})
        return None


def run_checks(args: Any, argv: List[str], device: torch.device, budget: Budget, est: Estimates, out: Dict[str, Any]) -> None:
    b = min(args.batch)
    step, qat_step = est.step("eager", b, "float"), est.step("eager", b, "qat")
    cpu_compare = 30.0 if args.model == "resnet50" else 2.0  # int8 convert and two forwards on the CPU
    items = [
        (
            "qat_int8",
            5 + (args.pre_qat_steps + 2) * step + (args.qat_steps + 2) * qat_step + cpu_compare,
            lambda: qat_int8(args, device, b),
        ),
        ("resume", 5 + 10 * step, lambda: {"resume": resume(args, device, b)}),
        ("deterministic", CHILD_START_S + 10 * step, lambda: {"deterministic": deterministic(argv, budget)}),
    ]
    for name, estimate, fn in items:
        if not budget.allows(name, estimate):
            continue
        t0 = time.perf_counter()
        result = _guarded(name, fn, out) or {}
        for key, value in result.items():
            if value is None:
                budget.skip(name, "time budget: killed mid-run")
            else:
                out["checks"][key] = {**value, "wall_s": time.perf_counter() - t0}


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 256], help="per-GPU 32 of the reference's 256; 256 on one GPU")
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--amp", default="auto", help="trainer.amp: auto | off | bf16 | fp16 (QAT always fp32)")
    ap.add_argument("--channels-last", default=None, type=lambda v: v.lower() == "true")
    ap.add_argument("--windows", type=int, default=5, help="timing windows per configuration")
    ap.add_argument("--window-s", type=float, default=1.5, help="seconds a timing window should last")
    ap.add_argument("--min-window-steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="steps after the first (autotuning, compile) before timing")
    ap.add_argument("--sync-steps", type=int, default=3, help="steps counted under the sync debug mode (CUDA)")
    ap.add_argument("--pre-qat-steps", type=int, default=60, help="float steps before the int8 check's QAT")
    ap.add_argument("--qat-steps", type=int, default=10, help="QAT steps with observers on in the int8 check")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: dynamo only, for tests)")
    ap.add_argument("--compile-allowance-s", type=float, default=90.0, help="budget estimate of one compile")
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip what would end past this many seconds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    ap.add_argument("--only-deterministic", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-compiled", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--known-steps", default="{}", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda but no CUDA device is visible; allowed here: --device cpu", file=sys.stderr)
        return 2
    if args.only_deterministic:
        _deterministic_child(args, device)
        return 0
    configure_determinism(False, device)  # the trainer's own call: cuDNN autotuning on CUDA
    budget = Budget(args.budget_s, start=START)
    est = Estimates(args, device, json.loads(args.known_steps))
    if args.child_compiled:
        compiled_child(args, device, budget, est)
        return 0
    out: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "machine": describe(),
        "setup": {k: v for k, v in vars(args).items() if k not in ("out", "only_deterministic", "child_compiled", "known_steps")},
        "rows": [],
        "checks": {},
        "skipped": budget.skipped,
        "errors": [],
    }
    probe = Stepper(args, device, 1)  # what the trainer would pick, recorded beside the rows
    out["setup"].update(
        amp_dtype=resolve_precision(args.amp, device).name,
        qat_dtype="off",
        channels_last=probe.fmt == torch.channels_last,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        optimizer=probe.opt_source,
        optimizer_fused=bool(probe.optimizer.defaults.get("fused")),
        nesterov=bool(probe.optimizer.defaults.get("nesterov")),
        momentum=probe.optimizer.defaults.get("momentum"),
    )
    del probe
    for batch in sorted(args.batch):  # the per-GPU batch first, then the checks on it
        for family in ("float", "qat"):
            group = lambda f=family, b=batch: measure_group(args, device, f, b, "eager", budget, est, out["rows"].append)  # noqa: E731
            _guarded(f"eager batch {batch} {family}", group, out)
        if batch == min(args.batch):
            run_checks(args, argv, device, budget, est, out)
    if not args.no_compile:
        compiled(args, argv, budget, est, out)
    out["wall_s"] = time.perf_counter() - START
    out["budget_s"] = args.budget_s
    failed = [k for k, v in out["checks"].items() if not v.get("ok")]
    out["ok"] = not failed and not out["errors"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(format_table(out))
    print(f"wrote {args.out}")
    return 0 if out["ok"] else 1


def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(out: Dict[str, Any]) -> str:
    s = out["setup"]
    where = out["gpu"] or out["machine"]["cpu_model"]
    lines = [
        f"{where}, torch {out['torch']}, CUDA {out['cuda']}, {s['model']} at {s['res']} px, amp {s['amp_dtype']} (QAT fp32), "
        f"channels_last {s['channels_last']}, cudnn.benchmark {s['cudnn_benchmark']}, SGD fused {s['optimizer_fused']}",
        "| mode | batch | kind | hook passes | img/s median | min-max | rel std | windows x steps | syncs/step | first step |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"]:
        w = r["img_per_s_windows"]
        lines.append(
            f"| {r['mode']} | {r['batch']} | {r['kind']} | {r['hook_passes']} | {r['img_per_s']:.1f} | "
            f"{min(w):.1f}-{max(w):.1f} | {r['rel_std_pct']:.2f}% | {r['windows']} x {r['steps_per_window']} | "
            f"{_fmt(r['syncs_per_step'], '.1f')} | {r['first_step_s']:.1f} s |"
        )
    for name in CHECKS:
        c = out["checks"].get(name)
        state = "skipped" if c is None else "ok" if c.get("ok") else "FAILED"
        lines.append(f"{name}: {state} {json.dumps(c, default=str)[:240] if c else ''}")
    lines += [f"skipped: {k['item']} ({k['reason']})" for k in out["skipped"]]
    lines += [f"error: {e['item']}: {e['error']}" for e in out["errors"]]
    lines.append(f"wall {out['wall_s']:.0f} s of a {out['budget_s']:.0f} s budget")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
