"""Where the Hydra configs live, and composition outside ``@hydra.main`` (tools and tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from acdc_exp.config.schema import register_configs
from acdc_exp.config.variants import typed_groups
from acdc_exp.errors import AcdcError, ConfigError


def config_dir() -> str:
    """``$ACDC_CONFIG_DIR``, else the package's ``acdc_exp/configs``: the YAML files themselves in
    an installed wheel, a link to the repository's ``configs/`` in a checkout (editable install,
    so edits show at once). Resolved: Hydra needs a real directory."""
    env = os.environ.get("ACDC_CONFIG_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"ACDC_CONFIG_DIR={env!r} is not a directory; set it to the repository's configs/ or unset it")
        return str(path)
    # the package directory, as importlib.resources.files("acdc_exp") gives it for an on-disk install
    path = (Path(__file__).parents[1] / "configs").resolve()
    if not (path / "train.yaml").is_file():
        raise ConfigError(f"no Hydra configs at {path}: reinstall acdc-exp, or set ACDC_CONFIG_DIR=<checkout>/configs")
    return str(path)


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose like ``acdc-train`` would, without running (no ``hydra:`` resolvers available).
    A bad override is a ConfigError whose message is one line (``hydra_error_line``)."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return typed_groups(compose(config_name=config_name, overrides=list(overrides)))
    except AcdcError:
        raise
    except Exception as exc:  # Hydra and OmegaConf composition errors
        raise ConfigError(hydra_error_line(exc)) from None


def finalize(cfg: DictConfig, cli_overrides: Optional[List[str]] = None) -> DictConfig:
    """Apply a SparseML recipe when ``recipe=`` is set, then validate ranges."""
    from acdc_exp.config.validate import validate  # torch behind it: --help and --cfg never load it

    cfg = typed_groups(cfg)
    if cfg.get("recipe"):
        from acdc_exp.recipe import apply_recipe  # the recipe parser: only for recipe= runs

        def compose_groups(options: Dict[str, str]) -> DictConfig:
            return compose_config([f"{group}={option}" for group, option in options.items()])

        cfg = typed_groups(apply_recipe(cfg, list(cli_overrides or []), compose_groups))
    validate(cfg)
    return cfg


def hydra_error_line(exc: BaseException) -> str:
    """Condense Hydra/OmegaConf's multi-line composition errors into one line."""
    parts: List[str] = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and len(parts) < 3:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if line not in seen and not line.startswith("To append"):
            parts.append(line)
            seen.add(line)
        e = e.__cause__ or e.__context__
    return " | ".join(parts)
