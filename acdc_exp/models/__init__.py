"""Model builders (torchvision ResNets and a small ResNet for 32x32 inputs)."""

from acdc_exp.models.factory import MODEL_NAMES, build_model

__all__ = ["build_model", "MODEL_NAMES"]
