"""Chart values that do nothing are refused, and the test values use only real settings
(issue 24, item 7)."""
from __future__ import annotations

import re

import helm_python
import pytest

from conftest import REPO, VALUES_FILES, load_values, render

CRATES = REPO / "crates"


def settings_read_by_the_code() -> set[str]:
    """Every ACCESSHUB_* name a Rust source file spells out."""
    names = set()
    for f in CRATES.rglob("*.rs"):
        names |= set(re.findall(r'"(ACCESSHUB_[A-Z0-9_]+)"', f.read_text()))
    return names


def env_names_in(values) -> set[str]:
    found = set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(k, str) and k.startswith("ACCESSHUB_"):
                    found.add(k)
                if k == "name" and isinstance(x, str) and x.startswith("ACCESSHUB_"):
                    found.add(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(values)
    return found


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_values_files_set_only_settings_the_services_read(name):
    real = settings_read_by_the_code()
    assert "ACCESSHUB_INGEST_BODY_LIMIT" in real
    unknown = env_names_in(load_values(name)) - real
    assert not unknown, f"{name}: settings no service reads: {sorted(unknown)}"


def test_services_have_no_args():
    # The binaries take no command-line arguments (every setting is an environment variable):
    # `args` would be ignored silently, so the schema refuses it.
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render({"services": {"reconciler": {"args": ["--sync-interval", "6h"]}}})
