"""Fixtures every test gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import baselines
import learners

# Process-wide registries of names: what a test or a documentation page registers must not reach
# later tests on the same worker, some of which compare the names with those of a fresh process.
_REGISTRIES: tuple[dict[str, Any], ...] = (
    baselines._FACTORIES,
    learners._REGISTRY,
    learners._CALLABLES,
)


@pytest.fixture(autouse=True)
def _restore_registries() -> Iterator[None]:
    before = [dict(registry) for registry in _REGISTRIES]
    yield
    for registry, kept in zip(_REGISTRIES, before, strict=True):
        registry.clear()
        registry.update(kept)
