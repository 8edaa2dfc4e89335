"""The docs build's griffe extension: ``#:`` attribute comments and Sphinx roles."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import griffe
import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "docs" / "_ext" / "sphinx_roles.py"


@pytest.fixture(scope="module")
def ext() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sphinx_roles", EXTENSION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rewrite_links_known_targets_and_codes_the_rest(ext: ModuleType) -> None:
    targets = {"fit_beliefs": "aif.inference.fit_beliefs"}
    text = "See :func:`fit_beliefs`, :class:`~pyro.infer.SVI` and :py:meth:`a.b`."
    assert ext.rewrite(text, targets.get) == (
        "See [`fit_beliefs`][aif.inference.fit_beliefs], `SVI` and `a.b`."
    )
    assert ext.rewrite("no roles, ``code`` only", targets.get) == "no roles, ``code`` only"


def test_comment_doc_reads_the_block_just_above(ext: ModuleType) -> None:
    lines = ["x = 1", "#: First line", "#:  indented", "Y = 2", "", "Z = 3"]
    assert ext.comment_doc(lines, 4) == "First line\n indented"
    assert ext.comment_doc(lines, 6) is None
    assert ext.comment_doc(lines, 1) is None


def test_extension_on_a_package(
    ext: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Package."""\n', encoding="utf-8")
    (pkg / "maths.py").write_text(
        textwrap.dedent(
            '''
            """Maths."""

            #: Floor for logarithms.
            EPS = 1e-16
            #: A private constant.
            _HIDDEN = 2
            UNDOCUMENTED = 3


            def stable_log(x):
                """Log floored at :data:`EPS`; see :func:`_helper`, :data:`UNDOCUMENTED`,
                :func:`toypkg.maths.stable_log`, :class:`torch.Tensor` and :func:`gone`."""


            def _helper():
                """Private."""
            '''
        ),
        encoding="utf-8",
    )
    loader = griffe.GriffeLoader(
        search_paths=[tmp_path],
        extensions=griffe.load_extensions(
            ext.SphinxRoles(packages=["toypkg"], warn_unresolved=True)
        ),
    )
    module = loader.load("toypkg")
    maths = module["maths"]
    assert maths["EPS"].docstring.value == "Floor for logarithms."
    assert maths["UNDOCUMENTED"].docstring is None
    assert maths["stable_log"].docstring.value == (
        "Log floored at [`EPS`][toypkg.maths.EPS]; see `_helper`, `UNDOCUMENTED`,\n"
        "[`toypkg.maths.stable_log`][toypkg.maths.stable_log], `torch.Tensor` and `gone`."
    )
    unresolved = [r.getMessage() for r in caplog.records if "role target" in r.getMessage()]
    assert len(unresolved) == 1 and "'gone'" in unresolved[0], unresolved
