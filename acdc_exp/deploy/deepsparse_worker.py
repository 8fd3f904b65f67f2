"""Time ONNX files in DeepSparse; run by the DeepSparse venv's Python, never imported by acdc_exp.

DeepSparse pins numpy 1.26 / onnx 1.14, so it lives in its own venv (scripts/setup_deepsparse.sh)
and this file uses only the standard library, numpy and deepsparse. It reads one JSON request on
stdin and writes one JSON answer on stdout:

    {"files": [PATH, ...], "threads": 2, "batches": [1, 16], "repeats": {"1": 30, "16": 5},
     "warmup": {"1": 5, "16": 1}, "res": 224, "seed": 0,
     "predict": {"inputs": NPY_PATH, "batch": 32}}                 # "predict" is optional
    -> {"deepsparse": "1.8.0", "cpu": {...}, "files": {PATH: {"fraction_supported": 1.0,
        "batches": {"1": {"times_s": [...]}, ...}, "predictions": [...]} | {"error": "..."}}}

"predict" runs the images of an .npy array (N x 3 x H x W, float32) through each file and
returns the argmax class of each image, so the caller can score top-1 in its own environment.
"""

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")  # no telemetry from a benchmark


def _time_engine(engine, shape, repeats, warmup, seed):
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    for _ in range(warmup):
        engine.run([x])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run([x])
        times.append(time.perf_counter() - start)
    return times


def _one_file(path, req):
    from deepsparse import Engine  # imported by main() first, after stdout is moved aside

    out = {"batches": {}}
    for batch in req.get("batches", []):
        key = str(batch)
        engine = Engine(path, batch_size=batch, num_cores=req["threads"])
        out["fraction_supported"] = float(engine.fraction_of_supported_ops)
        shape = (batch, 3, req["res"], req["res"])
        times = _time_engine(engine, shape, req["repeats"][key], req["warmup"][key], req["seed"])
        out["batches"][key] = {"times_s": times}
        del engine
    if req.get("predict"):
        out["predictions"] = _predict(path, req["predict"], req["threads"])
    return out


def _predict(path, spec, threads):
    """Argmax classes of every image; the last chunk is padded to the engine's fixed batch."""
    from deepsparse import Engine  # imported by main() first, after stdout is moved aside

    images = np.load(spec["inputs"]).astype(np.float32)
    batch = min(int(spec["batch"]), len(images))
    engine = Engine(path, batch_size=batch, num_cores=threads)
    preds = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], np.float32)])
        logits = engine.run([np.ascontiguousarray(chunk)])[0]
        preds.extend(int(c) for c in logits[:n].argmax(1))
    return preds


def _answer_channel():
    """A private copy of stdout for the JSON answer; fd 1 itself then goes to stderr, since
    DeepSparse's native library prints banners and notices to stdout (e.g. under NM_ARCH)."""
    sys.stdout.flush()
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(answer_fd, "w")


def main() -> None:
    req = json.loads(sys.stdin.read())
    channel = _answer_channel()
    # only now: DeepSparse's native library prints banners to stdout as it loads
    import deepsparse
    from deepsparse import cpu

    arch = cpu.cpu_architecture()
    answer = {
        "deepsparse": deepsparse.__version__,
        "cpu": {
            "isa": str(arch.isa),
            "vnni": bool(arch.vnni),
            "vendor": str(arch.vendor),
            "cores_per_socket": int(arch.available_cores_per_socket),
        },
        "files": {},
    }
    for path in req["files"]:
        try:
            answer["files"][path] = _one_file(path, req)
        except Exception as exc:  # one file that does not load must not hide the others
            answer["files"][path] = {
                "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            }
    channel.write(json.dumps(answer))
    channel.flush()


if __name__ == "__main__":
    main()
