"""One registry per config group: a variant registers once, with its typed schema and its builder.

A group's YAML chooses its variant with ``_target_`` (Hydra's own key): the dotted path of the
registered builder. Nothing else names the variant again: its name is derived (the name of the
module that defines the builder: ``acdc_exp.sparsity.methods.acdc.Acdc`` is ``acdc``), its keys
are its schema's, and code asks the built object, never compares names or probes keys.

    @SPARSITY.register(schema=AcdcConfig)
    class Acdc(MaskedMethod): ...

    method = SPARSITY.build(cfg.sparsity)   # the typed config -> Acdc(cfg)

Looking a variant up imports its module (as Hydra's ``instantiate`` does), which runs the
``register`` decorator: a variant outside the package (a test's toy method) registers the
same way, with no list to edit. Lower layers (the plan) reach the higher layers' variants only
through a registry, the way an interface is reached: the static imports still point downward.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from acdc_exp.errors import ConfigError

T = TypeVar("T")


def variant_name(target: str) -> str:
    """The name of the variant whose builder is ``target`` (a module-level class or function):
    its module's last name. From the string alone, so a config can name a run after it."""
    parts = str(target).split(".")
    return parts[-2] if len(parts) > 1 else parts[-1]


def target_of(obj: Any) -> str:
    """The dotted path a YAML's ``_target_`` gives for ``obj``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def variant_of(instance: Any) -> str:
    """The variant name of a built object: its class's module's name (``Acdc(...)`` is ``acdc``)."""
    return variant_name(target_of(type(instance)))


@dataclass(frozen=True)
class Variant:
    """A registered variant: its builder, the schema its config is merged onto, and traits
    (facts about the variant that code asks for instead of comparing names)."""

    group: str
    target: str
    schema: type
    builder: Any
    traits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.builder.__module__).rsplit(".", 1)[-1]

    def trait(self, key: str, default: Any = None) -> Any:
        return self.traits.get(key, default)


class Registry:
    """The variants of config group ``group``. ``base`` is the schema every variant's config
    has; ``open_targets``: a ``_target_`` that never registered is still a variant, with the
    base schema and extra keys allowed (a model added the usual Hydra way)."""

    def __init__(self, group: str, base: type, *, handle: str, open_targets: bool = False) -> None:
        self.group = group
        self.handle = handle  # where a variant registers (messages)
        self.base = base
        self.open_targets = open_targets
        self._variants: Dict[str, Variant] = {}

    def register(self, *, schema: Optional[type] = None, **traits: Any) -> Callable[[T], T]:
        """Decorator: the builder (class or function) becomes a variant of this group."""

        def add(obj: T) -> T:
            target = target_of(obj)
            self._variants[target] = Variant(self.group, target, schema or self.base, obj, dict(traits))
            return obj

        return add

    def registered(self) -> Dict[str, Variant]:
        """The variants registered so far (their modules imported), by target."""
        return dict(self._variants)

    def variant(self, node: Any) -> Variant:
        """The variant ``node`` (the group's config) chooses by its ``_target_``."""
        given = target = _target(node, self.group)
        if target not in self._variants:
            obj = _import(target, self.group)  # its module registers it on import
            target = target_of(obj) if hasattr(obj, "__qualname__") else target  # a re-export: where it is defined
            if target not in self._variants:
                if not self.open_targets:
                    raise ConfigError(
                        f"{self.group}._target_={given} is not a registered {self.group} variant; allowed: a class or "
                        f"function decorated with {self.handle}.register"
                    )
                return Variant(self.group, target, self.base, obj)
        return self._variants[target]

    def typed(self, node: Any) -> DictConfig:
        """``node`` merged onto its variant's schema: defaults filled, types checked, and a key
        the variant does not have refused (one line naming it)."""
        variant = self.variant(node)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is variant.schema:
            return node  # typed already, and still in its config (interpolations resolve there)
        schema = OmegaConf.structured(variant.schema)
        if variant.schema is self.base and self.open_targets:
            OmegaConf.set_struct(schema, False)  # an unregistered builder's own keyword arguments
        try:
            out = OmegaConf.merge(schema, node)
        except OmegaConfBaseException as exc:
            line = str(exc).strip().splitlines()[0]
            where = f" (full_key: {self.group}.{exc.full_key})" if getattr(exc, "full_key", None) else ""
            raise ConfigError(f"{self.group} ({variant.name}): {line}{where}") from None
        OmegaConf.set_struct(out, True)
        return out

    def name_of(self, node: Any) -> str:
        return self.variant(node).name

    def build(self, node: Any, **runtime: Any) -> Any:
        """The variant's builder called with the typed config and the run-time values it needs."""
        return self.variant(node).builder(self.typed(node), **runtime)


def _target(node: Any, group: str) -> str:
    """``node``'s ``_target_``: a config node, a dict, or a schema's instance (a test's)."""
    if isinstance(node, (DictConfig, dict)):
        target = node.get("_target_")
    else:
        target = getattr(node, "_target_", None) if is_dataclass(node) else None
    if not target:
        raise ConfigError(f"{group} has no _target_; allowed: a {group} config choosing its variant (configs/{group}/*.yaml)")
    return str(target)


def _import(target: str, group: str) -> Any:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts[:cut]).startswith(exc.name):  # it exists; an import of it does not
                raise ConfigError(f"{group}._target_={target} cannot be imported ({exc})") from None
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"{group}._target_={target} cannot be imported (no such module or attribute)")
