"""The documents stay true to the tree: relative links resolve, and the counts they state are
the counts of the files they describe."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

DOCS = [REPO / "README.md", REPO / "slurm" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    text = doc.read_text()
    for target, _ in _LINK.findall(text):
        if "://" in target:
            continue
        assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)} links to missing {target}"


def test_stated_package_count_is_the_lock_count():
    locked = sum(
        1 for line in (REPO / "requirements" / "lock.txt").read_text().splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line)
    )
    for doc, pattern in ((REPO / "README.md", r"\((\d+) packages"), (REPO / "docs" / "lock.md", r"transitive \((\d+)")):
        stated = re.findall(pattern, doc.read_text())
        assert stated and all(int(n) == locked for n in stated), (doc.name, stated, locked)
