"""docs/environment.md shows the numbers the code gives (its tables are generated, then checked)."""

from __future__ import annotations

import pytest

from experiments.doc_tables import BLOCKS, FAST_BLOCKS, update_page


def test_tables_without_simulation_match_the_code() -> None:
    assert update_page(FAST_BLOCKS, check=True) == []


@pytest.mark.slow
def test_simulated_tables_match_the_code() -> None:
    slow = tuple(name for name in BLOCKS if name not in FAST_BLOCKS)
    assert update_page(slow, check=True) == []
