"""The reference job's GPU paths in one command: ResNet-50 training steps with AMP and
channels_last (dense and AC/DC-compressed, eager and torch.compile), the QAT switch and the
int8 evaluation, trainer.deterministic, and a resume that continues with the same loss.

    python bench/gpu_check.py                      # on a CUDA machine: ~5 minutes on one H100/H200
    python bench/gpu_check.py --device cpu --model resnet_small --batch 8 --res 32 --steps 2   # the CPU path (tests)

Needs torch and torchvision only (plus pyyaml for the experiment's layer list): no data, no
network, no Hydra, W&B or FFCV (a GPU machine may have PyTorch and little else). Images are
synthetic uint8 batches made on the device and normalized as DataModule.prepare does. It uses
the project's own Sparsifier, QATController, precision and evaluation code, so what it
measures is what the trainer runs. Writes a JSON (--out) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a plain checkout, installed or not

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from acdc_exp.machine import describe  # noqa: E402
from acdc_exp.models import build_model  # noqa: E402
from acdc_exp.plan import StepPlan  # noqa: E402
from acdc_exp.quantization.compare import compare_int8_to_fake_quant  # noqa: E402
from acdc_exp.quantization.qat import QATController  # noqa: E402
from acdc_exp.sparsity.sparsifier import Sparsifier  # noqa: E402
from acdc_exp.training.precision import Precision, channels_last_on, configure_determinism, resolve_precision  # noqa: E402

EXPERIMENT = ROOT / "configs" / "experiment" / "resnet50_imagenet_acdc85_quant.yaml"
SMALL_PARAMS = ["layer*.conv*.weight", "layer*.downsample.0.weight"]  # configs/sparsity/acdc.yaml


def _plan(phase: str, *, update: bool = False, sparsity: float = 0.85, qat: bool = False) -> StepPlan:
    return StepPlan(
        step=0,
        epoch=0.0,
        lr=0.01,
        weight_decay=1e-5,
        phase=phase,
        sparsity=sparsity if phase == "compressed" else 0.0,
        update_masks=update,
        qat_active=qat,
        qat_start=False,
        observers_frozen=False,
        bn_frozen=False,
    )


class Stepper:
    """The trainer's step (training/trainer.py::_train_step) on one fixed synthetic batch."""

    def __init__(self, args, device: torch.device, *, compiled: bool = False) -> None:
        torch.manual_seed(0)
        self.device, self.args = device, args
        self.precision: Precision = resolve_precision(args.amp, device)
        self.channels_last = channels_last_on(args.channels_last, device)
        self.fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = build_model(args.model, num_classes=args.classes).to(device, memory_format=self.fmt)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-5)
        self.scaler = self.precision.grad_scaler()
        params = _experiment_params() if args.model == "resnet50" else SMALL_PARAMS
        self.sparsifier = Sparsifier(
            self.model, params=params, mask_type="block4", global_sparsity=False, reset_momentum="all", enabled=True
        )
        self.sparsifier.attach_optimizer(self.opt)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.criterion = nn.CrossEntropyLoss()
        gen = torch.Generator(device="cpu").manual_seed(1)
        images = torch.randint(0, 256, (args.batch, 3, args.res, args.res), dtype=torch.uint8, generator=gen)
        self.labels = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
        mean = torch.tensor([123.7, 116.3, 103.5], device=device).view(1, 3, 1, 1)
        std = torch.tensor([58.4, 57.1, 57.4], device=device).view(1, 3, 1, 1)
        self.images = ((images.to(device).float() - mean) / std).contiguous(memory_format=self.fmt)

    def step(self, p: StepPlan) -> torch.Tensor:
        self.sparsifier.begin_step(p)
        with self.precision.autocast():
            loss = self.criterion(self.forward(self.images), self.labels)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.sparsifier.mask_gradients()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sparsifier.end_step()
        return loss.detach()


def _experiment_params() -> List[str]:
    return list(yaml.safe_load(EXPERIMENT.read_text())["sparsity"]["params"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _img_per_s(stepper: Stepper, p: StepPlan, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        stepper.step(p)
    _sync(stepper.device)
    start = time.perf_counter()
    for _ in range(steps):
        stepper.step(p)
    _sync(stepper.device)
    return steps * stepper.args.batch / (time.perf_counter() - start)


def throughput(args, device: torch.device, compiled: bool) -> Dict[str, Any]:
    """Dense and compressed (block4 85%, masks held) img/s at each resolution."""
    rows = {}
    for res in args.res_list:
        args.res = res
        t0 = time.perf_counter()
        s = Stepper(args, device, compiled=compiled)
        dense = _img_per_s(s, _plan("dense"), args.steps, args.warmup)
        s.step(_plan("compressed", update=True))  # masks computed once per phase
        compressed = _img_per_s(s, _plan("compressed"), args.steps, args.warmup)
        rows[str(res)] = {
            "dense_img_per_s": dense,
            "compressed_img_per_s": compressed,
            "mask_overhead_pct": 100.0 * (dense / compressed - 1.0),
            "wall_s": time.perf_counter() - t0,
        }
    return rows


def qat_and_int8(args, device: torch.device) -> Dict[str, Any]:
    """Prepare QAT on the compressed model (the module swap), train, freeze, convert to int8 on
    the CPU and compare it with the fake-quantized model layer by layer."""
    s = Stepper(args, device)
    s.step(_plan("compressed", update=True))
    quantizer = QATController()
    quantizer.prepare(s.model)
    s.sparsifier.rebind(s.model)
    s.forward = s.model
    qat = _plan("compressed", qat=True)
    losses = [float(s.step(qat)) for _ in range(args.steps)]
    quantizer.apply_freezes(s.model, observers_frozen=True, bn_frozen=True)
    losses += [float(s.step(qat)) for _ in range(2)]
    cpu_model = s.model.cpu().eval()
    report = compare_int8_to_fake_quant(cpu_model, quantizer.convert(cpu_model), s.images[: min(16, args.batch)].float().cpu())
    worst = max(r["frac_over_one_step"] for r in report["layers"])
    zeros_kept = all(bool((cpu_model.get_parameter(n)[~m.cpu()] == 0).all()) for n, m in s.sparsifier.masks.items())
    return {
        "losses_finite": all(map(lambda v: v == v and abs(v) < float("inf"), losses)),
        "last_loss": losses[-1],
        "int8_top1_agreement": report["top1_agreement"],
        "int8_worst_frac_over_one_step": worst,
        "masks_hold_in_qat": zeros_kept,
    }


def resume(args, device: torch.device) -> Dict[str, Any]:
    """K steps, save the state a checkpoint holds, 2 more; reload into a fresh run: same losses."""
    a = Stepper(args, device)
    p = _plan("compressed", update=True)
    a.step(p)
    p = _plan("compressed")
    for _ in range(2):
        a.step(p)
    state = copy.deepcopy(
        {
            "model": a.model.state_dict(),
            "opt": a.opt.state_dict(),
            "scaler": a.scaler.state_dict(),
            "sparsifier": a.sparsifier.state_dict(),
        }
    )
    want = [float(a.step(p)) for _ in range(2)]
    b = Stepper(args, device)
    b.model.load_state_dict(state["model"])
    b.opt.load_state_dict(state["opt"])
    if state["scaler"]:
        b.scaler.load_state_dict(state["scaler"])
    b.sparsifier.load_state_dict(state["sparsifier"])
    got = [float(b.step(p)) for _ in range(2)]
    diff = max(abs(x - y) for x, y in zip(want, got))
    return {"losses": want, "resumed_losses": got, "max_abs_diff": diff, "ok": diff <= 1e-3 * max(1.0, abs(want[0]))}


def deterministic(args) -> Dict[str, Any]:
    """trainer.deterministic=true in a fresh process (cuBLAS reads its workspace setting at
    its first call): a few compressed steps must run, twice to the same loss."""
    cmd = [
        sys.executable,
        __file__,
        "--only-deterministic",
        "--device",
        args.device,
        "--model",
        args.model,
        "--batch",
        str(args.batch),
        "--res",
        str(args.res_list[0]),
        "--amp",
        args.amp,
        "--classes",
        str(args.classes),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _deterministic_child(args, device: torch.device) -> None:
    configure_determinism(True, device)
    losses = []
    for _ in range(2):
        s = Stepper(args, device)
        s.step(_plan("compressed", update=True))
        losses.append([float(s.step(_plan("compressed"))) for _ in range(2)])
    print(json.dumps({"ok": losses[0] == losses[1], "losses": losses}))


def _timed(name: str, fn: Callable[[], Any], out: Dict[str, Any]) -> None:
    t0 = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as exc:  # the check goes on; the failure is reported in the table and JSON
        out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    out[name + "_wall_s"] = time.perf_counter() - t0


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--res", type=int, nargs="+", default=[176, 224], dest="res_list")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--amp", default="auto", help="trainer.amp: auto | off | bf16 | fp16")
    ap.add_argument("--channels-last", default=None, type=lambda v: v.lower() == "true")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile timings")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    ap.add_argument("--only-deterministic", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda but no CUDA device is visible; allowed here: --device cpu", file=sys.stderr)
        return 2
    args.res = args.res_list[0]
    if args.only_deterministic:
        _deterministic_child(args, device)
        return 0
    out: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "setup": {k: v for k, v in vars(args).items() if k not in ("out", "only_deterministic")},
    }
    out["setup"]["amp_dtype"] = resolve_precision(args.amp, device).name
    _timed("eager", lambda: throughput(args, device, compiled=False), out)
    if not args.no_compile:
        _timed("compiled", lambda: throughput(args, device, compiled=True), out)
    args.res = args.res_list[0]  # the checks below run at the first resolution
    _timed("qat_int8", lambda: qat_and_int8(args, device), out)
    _timed("resume", lambda: resume(args, device), out)
    _timed("deterministic", lambda: deterministic(args), out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(format_table(out))
    print(f"wrote {args.out}")
    failed = [k for k in ("qat_int8", "resume", "deterministic") if not _passed(out.get(k))]
    return 1 if failed else 0


def _passed(section: Any) -> bool:
    if not isinstance(section, dict) or section.get("ok") is False:
        return False
    if "masks_hold_in_qat" in section:
        return section["losses_finite"] and section["masks_hold_in_qat"]
    return True


def format_table(out: Dict[str, Any]) -> str:
    s = out["setup"]
    lines = [
        f"{out['gpu'] or out['machine']['cpu_model']}, torch {out['torch']}, {s['model']} batch {s['batch']}, "
        f"amp {s['amp_dtype']}",
        "| mode | res | dense img/s | compressed img/s | mask overhead |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in ("eager", "compiled"):
        rows = out.get(mode)
        if not isinstance(rows, dict) or rows.get("ok") is False:
            lines.append(f"| {mode} | - | {rows.get('error') if isinstance(rows, dict) else 'skipped'} | | |")
            continue
        for res, r in rows.items():
            lines.append(
                f"| {mode} | {res} | {r['dense_img_per_s']:.0f} | {r['compressed_img_per_s']:.0f} | "
                f"{r['mask_overhead_pct']:+.1f}% |"
            )
    for name in ("qat_int8", "resume", "deterministic"):
        lines.append(f"{name}: {'ok' if _passed(out.get(name)) else 'FAILED'} {json.dumps(out.get(name), default=str)[:200]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
