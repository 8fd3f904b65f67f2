"""Data: FFCV and torchvision loaders, .beton writing, the digits and synthetic datasets."""

from acdc_exp.data.module import DataModule, build_data

__all__ = ["DataModule", "build_data"]
