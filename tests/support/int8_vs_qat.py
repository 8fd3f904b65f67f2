"""Run as a script; prints, as JSON, the layer-by-layer comparison of an int8 model with the
fake-quantized model it was converted from (acdc_exp.quantization.compare).

    python int8_vs_qat.py run RUN_DIR          # a finished QAT run: int8 vs final member, whole val set
    python int8_vs_qat.py synthetic 0|1        # a small ResNet calibrated on noise, reduce_range off|on
    python int8_vs_qat.py trained 0|1          # a small ResNet trained on digits (16x16) with QAT, scored
                                               # through the run's int8 path and acdc-eval's, and raw x86

A separate process, so that the int8 kernels' instruction set can be chosen through the
environment before torch loads (FBGEMM_ENABLE_INSTRUCTIONS=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2
make a VNNI machine compute like one without)."""

import json
import sys

import torch
import torch.ao.quantization as tq
from omegaconf import OmegaConf, open_dict

from acdc_exp.quantization.compare import compare_int8_to_fake_quant


def finished_run(run: str) -> dict:
    from acdc_exp.config.compose import compose_config
    from acdc_exp.data import build_data
    from acdc_exp.runs.members import load_member

    qat, _, config = load_member(run, "final")
    int8, _, _ = load_member(run, "int8")
    cfg = compose_config([])
    with open_dict(cfg):
        cfg.data = OmegaConf.merge(cfg.data, config["data"])  # the run's own data
    data = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device=torch.device("cpu"), seed=0)
    images, labels = zip(*[(data.prepare(x), y) for x, y, *_ in data.val_batches()])
    x, y = torch.cat(images), torch.cat(labels)
    report = compare_int8_to_fake_quant(qat, int8, x)
    with torch.no_grad():
        report["qat_top1"] = 100.0 * (qat(x).argmax(1) == y).float().mean().item()
        report["int8_top1"] = 100.0 * (int8(x).argmax(1) == y).float().mean().item()
    return report


def synthetic(reduce_range: bool) -> dict:
    from acdc_exp.models.small_resnet import SmallResNet
    from acdc_exp.quantization.qat import QATController, convert_to_int8

    torch.manual_seed(0)
    model = SmallResNet(num_classes=10, depth=8, width=16)
    quantizer = QATController(reduce_range=reduce_range)
    quantizer.prepare(model)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        for _ in range(3):  # calibrate the observers in train mode, as QAT does
            model(x)
    model.apply(tq.disable_observer)
    # the configured backend as such, whatever engine the run would score with here
    report = compare_int8_to_fake_quant(model, convert_to_int8(model, quantizer.backend), x)
    report["backend_exact_on_this_cpu"] = quantizer.backend_exact_on_this_cpu()
    report["int8_engine"] = quantizer.int8_engine()
    return report


def _digits16():
    from acdc_exp.data.digits import digits_arrays

    def prep(a):  # 16x16 (2x the source 8x8): a quarter of the compute of 32x32
        x = torch.nn.functional.avg_pool2d(torch.from_numpy(a).float()[:, None], 2)
        return x.div(255.0).sub(0.3).div(0.4).expand(-1, 3, -1, -1).contiguous()

    x_train, y_train, x_val, y_val = digits_arrays()
    return prep(x_train), torch.from_numpy(y_train), prep(x_val), torch.from_numpy(y_val)


def _epoch(model, opt, x, y, gen):
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), 64):
        idx = perm[i : i + 64]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def trained(reduce_range: bool) -> dict:
    """Per-tensor and per-channel weights: the fake-quant model's top-1 and the int8 model's
    as the run scores it (int8_member), as acdc-eval loads it (load_member), and with the raw
    x86 engine; per-layer comparisons of the run's int8 model and the raw x86 one."""
    import copy
    import tempfile
    from pathlib import Path

    from acdc_exp.models import model_from_config
    from acdc_exp.quantization.qat import QATController, convert_to_int8
    from acdc_exp.runs.members import load_member
    from acdc_exp.training.int8_member import int8_member
    from acdc_exp.training.metrics import evaluate

    x_train, y_train, x_val, y_val = _digits16()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model_cfg = {
        "_target_": "acdc_exp.models.small_resnet.small_resnet",
        "num_classes": 10,
        "width": 8,
        "depth": 8,
        "zero_init_residual": False,
    }
    float_model = model_from_config(model_cfg)
    opt = torch.optim.SGD(float_model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        _epoch(float_model, opt, x_train, y_train, gen)
    batches = [(x_val[i : i + 128], y_val[i : i + 128]) for i in range(0, len(x_val), 128)]
    cpu = torch.device("cpu")
    out = {}
    for per_channel in (False, True):
        model = copy.deepcopy(float_model)
        quantizer = QATController(reduce_range=reduce_range, per_channel=per_channel)
        quantizer.prepare(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        _epoch(model, opt, x_train, y_train, gen)
        quantizer.apply_freezes(model, observers_frozen=True, bn_frozen=True)
        qat = evaluate(model, batches, lambda x: x, cpu)
        config = {
            "model": model_cfg,
            # configs/quantization/qat.yaml's keys, as a run's checkpoint stores them
            "quantization": {
                "_target_": "acdc_exp.quantization.qat.Qat",
                **{k: v for k, v in quantizer.state_dict().items() if k != "prepared"},
                "start_epoch": 0.0,
                "disable_observer_epoch": None,
                "freeze_bn_stats_epoch": None,
                "per_channel": per_channel,
                "reduce_range": reduce_range,
                "num_bits": 8,
            },
        }
        with tempfile.TemporaryDirectory() as tmp:
            notes = []
            run, path = int8_member(
                quantizer,
                model,
                batches,
                lambda x: x,
                limit=None,
                distributed=False,
                reduce_device=cpu,
                save_dir=Path(tmp),
                extra={"config": config},
                message=notes.append,
            )
            saved_engine = torch.load(path, weights_only=False).get("int8_engine")
            loaded, _, _ = load_member(str(path), "int8")
            eval_top1 = evaluate(loaded, batches, lambda x: x, cpu)["top1"]
        # the engine is process-wide (quantized adds follow it): each model runs under its own
        raw = convert_to_int8(model, "x86")
        x86_top1, raw_x86 = evaluate(raw, batches, lambda x: x, cpu)["top1"], compare_int8_to_fake_quant(model, raw, x_val)
        out["per_channel" if per_channel else "per_tensor"] = {
            "qat_top1": qat["top1"],
            "int8_top1": run["top1"],
            "int8_engine": run.get("int8_engine"),
            "saved_engine": saved_engine,
            "notes": notes,
            "acdc_eval_top1": eval_top1,
            "x86_top1": x86_top1,
            "run_path": compare_int8_to_fake_quant(model, quantizer.convert(model), x_val),
            "raw_x86": raw_x86,
        }
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, arg = sys.argv[1], sys.argv[2]
    modes = {
        "run": lambda: finished_run(arg),
        "synthetic": lambda: synthetic(bool(int(arg))),
        "trained": lambda: trained(bool(int(arg))),
    }
    print(json.dumps(modes[mode]()))
