"""Run as a script; prints, as JSON, the layer-by-layer comparison of an int8 model with the
fake-quantized model it was converted from (acdc_exp.quantization.compare).

    python int8_vs_qat.py run RUN_DIR          # a finished QAT run: int8 vs final member, whole val set
    python int8_vs_qat.py synthetic 0|1        # a small ResNet calibrated on noise, reduce_range off|on

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
    from acdc_exp.quantization.qat import QATController

    torch.manual_seed(0)
    model = SmallResNet(num_classes=10, depth=8, width=16)
    quantizer = QATController(reduce_range=reduce_range)
    quantizer.prepare(model)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        for _ in range(3):  # calibrate the observers in train mode, as QAT does
            model(x)
    model.apply(tq.disable_observer)
    report = compare_int8_to_fake_quant(model, quantizer.convert(model), x)
    report["int8_exact_on_this_cpu"] = quantizer.int8_exact_on_this_cpu()
    return report


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, arg = sys.argv[1], sys.argv[2]
    print(json.dumps(finished_run(arg) if mode == "run" else synthetic(bool(int(arg)))))
