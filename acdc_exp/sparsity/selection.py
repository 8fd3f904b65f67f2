"""Which parameters a sparsity method prunes, from a list of names and patterns.

An entry of ``patterns`` is one of
  * an exact parameter name (``layer1.0.conv1.weight``),
  * an fnmatch glob (``layer*.conv*.weight``; ``*`` also crosses dots),
  * ``re:<regex>``, a full-match regular expression as SparseML recipes write it,
  * ``__ALL_PRUNABLE__``: every Conv/Linear weight, SparseML's shorthand.

SparseML's ResNet-50 names are accepted as aliases of torchvision's: an exact SparseML name is
translated (``to_torchvision_name``), and a glob / regex that starts with a SparseML root
(``input``, ``sections``, ``classifier``) is matched against each parameter's SparseML name, so
``sections.*.conv2.weight`` works too. Other globs see only the model's own names, so that
``*conv*.weight`` does not also pick up ``downsample.0`` through its alias ``identity.conv``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import warnings
from typing import Callable, Dict, List, Sequence, Tuple

from torch import nn

from acdc_exp.errors import ConfigError

ALL_PRUNABLE = "__ALL_PRUNABLE__"
_GLOB_CHARS = "*?["

# SparseML ResNet name -> torchvision name, applied to the start of a name (suffix kept)
_TO_TV: List[Tuple[re.Pattern, object]] = [
    (re.compile(r"^input\.conv(?=\.|$)"), "conv1"),
    (re.compile(r"^input\.bn(?=\.|$)"), "bn1"),
    (
        re.compile(r"^sections\.(\d+)\.(\d+)\.identity\.conv(?=\.|$)"),
        lambda m: f"layer{int(m.group(1)) + 1}.{m.group(2)}.downsample.0",
    ),
    (
        re.compile(r"^sections\.(\d+)\.(\d+)\.identity\.bn(?=\.|$)"),
        lambda m: f"layer{int(m.group(1)) + 1}.{m.group(2)}.downsample.1",
    ),
    (
        re.compile(r"^sections\.(\d+)\.(\d+)\.(conv|bn)(\d+)(?=\.|$)"),
        lambda m: f"layer{int(m.group(1)) + 1}.{m.group(2)}.{m.group(3)}{m.group(4)}",
    ),
    (re.compile(r"^classifier\.fc(?=\.|$)"), "fc"),
]

# torchvision name -> SparseML name (the inverse of _TO_TV), for matching globs in either naming
_TO_SPARSEML: List[Tuple[re.Pattern, object]] = [
    (re.compile(r"^conv1(?=\.|$)"), "input.conv"),
    (re.compile(r"^bn1(?=\.|$)"), "input.bn"),
    (
        re.compile(r"^layer(\d+)\.(\d+)\.downsample\.0(?=\.|$)"),
        lambda m: f"sections.{int(m.group(1)) - 1}.{m.group(2)}.identity.conv",
    ),
    (
        re.compile(r"^layer(\d+)\.(\d+)\.downsample\.1(?=\.|$)"),
        lambda m: f"sections.{int(m.group(1)) - 1}.{m.group(2)}.identity.bn",
    ),
    (
        re.compile(r"^layer(\d+)\.(\d+)\.(conv|bn)(\d+)(?=\.|$)"),
        lambda m: f"sections.{int(m.group(1)) - 1}.{m.group(2)}.{m.group(3)}{m.group(4)}",
    ),
    (re.compile(r"^fc(?=\.|$)"), "classifier.fc"),
]


def _translate(name: str, rules: List[Tuple[re.Pattern, object]]) -> str:
    for pattern, repl in rules:
        new, count = pattern.subn(repl, name, count=1)
        if count:
            return new
    return name


def to_torchvision_name(name: str) -> str:
    """Translate a SparseML ResNet name (``sections.0.0.conv1.weight``) to torchvision's
    (``layer1.0.conv1.weight``); other names come back unchanged."""
    return _translate(name, _TO_TV)


def to_sparseml_name(name: str) -> str:
    """Inverse of ``to_torchvision_name``; names without a SparseML form come back unchanged."""
    return _translate(name, _TO_SPARSEML)


_SPARSEML_ROOTS = ("input", "sections", "classifier")


def _in_sparseml_naming(entry: str) -> bool:
    body = entry[3:] if entry.startswith("re:") else entry
    return body.startswith(_SPARSEML_ROOTS)


def _is_pattern(entry: str) -> bool:
    return entry.startswith("re:") or any(c in entry for c in _GLOB_CHARS)


def _closest(entry: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(to_torchvision_name(entry), names, n=3, cutoff=0.5)
    if not close:  # a glob rarely looks like a real name; compare without its wildcards
        close = difflib.get_close_matches(re.sub(r"[*?\[\]]", "", entry), names, n=3, cutoff=0.3)
    return ", ".join(close) if close else "(none similar)"


def _matcher(entry: str) -> Callable[[str], bool]:
    """A predicate on a parameter name for a glob or ``re:`` entry."""
    if entry.startswith("re:"):
        try:
            regex = re.compile(entry[3:])
        except re.error as err:
            raise ConfigError(f"params entry {entry!r} is not a valid regex ({err}); allowed: re:<python regex>") from None
        return lambda name: regex.fullmatch(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, entry)


def select_parameters(model: nn.Module, patterns: Sequence[str]) -> List[Tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs named by ``patterns``, in ``model.named_parameters()``
    order, each once.

    An exact name that is given twice (after alias translation) is dropped with a warning;
    overlapping globs are merged silently. An exact name that does not exist, or a glob that
    matches nothing, is a ConfigError listing the closest real names. Only weights with
    ndim >= 2 (conv / linear kernels) may be selected.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    params: Dict[str, nn.Parameter] = dict(model.named_parameters())
    names = list(params)
    if not patterns:
        raise ConfigError("sparsity params is empty; allowed: parameter names or glob patterns such as '*conv*.weight'")

    selected: Dict[str, str] = {}  # torchvision name -> the entry that picked it
    duplicates: List[str] = []
    seen_exact: set = set()
    for entry in patterns:
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"params entry {entry!r} is not a parameter name; allowed: non-empty names or glob patterns")
        entry = entry.strip()
        if entry == ALL_PRUNABLE:
            hits = _prunable_names(model, params)
        elif _is_pattern(entry):
            match = _matcher(entry)
            alias = _in_sparseml_naming(entry)
            hits = [n for n in names if match(n) or (alias and match(to_sparseml_name(n)))]
            if not hits:
                raise ConfigError(
                    f"params pattern {entry!r} matches no parameter of the model; closest: {_closest(entry, names)}"
                )
        else:
            # a literal name wins over its alias (a model may use SparseML's names itself)
            name = entry if entry in params else to_torchvision_name(entry)
            if name not in params:
                raise ConfigError(f"params entry {entry!r} is not a parameter of the model; closest: {_closest(entry, names)}")
            if name in seen_exact:
                duplicates.append(entry if name == entry else f"{entry} (= {name})")
            seen_exact.add(name)
            hits = [name]
        for name in hits:
            selected.setdefault(name, entry)

    if duplicates:
        warnings.warn(
            f"sparsity params lists {len(duplicates)} name(s) more than once; using each once: " + ", ".join(duplicates),
            stacklevel=2,
        )

    bad = [n for n in selected if params[n].ndim < 2]
    if bad:
        shown = ", ".join(f"{n} (from {selected[n]!r}, shape {tuple(params[n].shape)})" for n in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ConfigError(
            f"sparsity params selects parameter(s) with ndim < 2: {shown}{more}; allowed: conv/linear weights only (ndim >= 2)"
        )
    return [(n, params[n]) for n in names if n in selected]


def _prunable_names(model: nn.Module, params: Dict[str, nn.Parameter]) -> List[str]:
    """Weights of Conv and Linear modules (SparseML's __ALL_PRUNABLE__)."""
    out: List[str] = []
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            name = f"{mod_name}.weight" if mod_name else "weight"
            if name in params:  # shared weights appear once, under their first name
                out.append(name)
    return out
