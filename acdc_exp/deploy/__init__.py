"""Deployment: ONNX export of every member format (FP32, QDQ, QOperator int8) and its checks,
ONNX compatibility with DeepSparse, inference speed (onnxruntime in this process, DeepSparse in
its own venv) and the speed report ``acdc-export benchmark.enabled=true`` prints."""
