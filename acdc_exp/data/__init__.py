"""Data: FFCV and torchvision loaders, .beton writing, the digits and synthetic datasets."""

from typing import Any

__all__ = ["DataModule", "build_data"]


def __getattr__(name: str) -> Any:
    # lazy: composing a config imports acdc_exp.data.beton_names (the .beton naming resolver),
    # which must not pull in torch through the loaders
    if name in __all__:
        from acdc_exp.data import module

        return getattr(module, name)
    raise AttributeError(f"module 'acdc_exp.data' has no attribute {name!r}")
