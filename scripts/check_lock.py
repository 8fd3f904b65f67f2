#!/usr/bin/env python3
"""Compare the running environment with requirements/lock.txt.

    python scripts/check_lock.py              # exit 1 with one line per package that differs
    python scripts/check_lock.py --report     # also print Python, CPU and the key versions

Standard library only, so it runs before (and without) the project being importable.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 name normalisation: 'Hydra_Core' and 'hydra-core' are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK) -> Dict[str, str]:
    """{canonical name: version} of every ``name==version`` line of the lock."""
    pins = {}
    for line in lock.read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def installed_versions() -> Dict[str, str]:
    """The version import would load: the first on sys.path (a package that vendors others,
    such as setuptools, may append its own copies to sys.path once imported)."""
    found: Dict[str, str] = {}
    for dist in metadata.distributions():
        if dist.metadata["Name"]:
            found.setdefault(canonical(dist.metadata["Name"]), dist.version)
    return found


def mismatches(lock: Path = LOCK) -> List[str]:
    """One line per locked package that is missing or at another version."""
    have = installed_versions()
    out = []
    for name, want in sorted(locked_versions(lock).items()):
        got = have.get(name)
        if got != want:
            out.append(f"{name}: locked {want}, installed {got or 'nothing'}")
    return out


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="print the machine and key package versions first")
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    if args.report:
        sys.path.insert(0, str(LOCK.parents[1]))
        from acdc_exp.machine import describe, format_report  # the project's one description of a machine

        print(format_report(describe()))
    bad = mismatches(args.lock)
    for line in bad:
        print(f"check_lock: {line}", file=sys.stderr)
    if bad:
        print(f"check_lock: {len(bad)} package(s) differ from {args.lock}; re-run scripts/setup.sh", file=sys.stderr)
        return 1
    print(f"check_lock: all {len(locked_versions(args.lock))} locked packages installed at their locked versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
