"""MkDocs hook: serve MathJax from the built site itself, so that formulas render with no network.

The MathJax files come from the ``django-static-mathjax`` wheel of the ``docs`` extra (MathJax
3.2.2, Apache 2.0; no Django needed to read its files). They are added to the build as generated
files under ``assets/mathjax/``: the ``tex-chtml.js`` component that ``mkdocs.yml`` loads, plus
every folder it may load on demand (fonts, TeX extensions, the menu and its accessibility parts).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.mathjax")

#: Where the files land in the site; ``mkdocs.yml`` loads ``assets/mathjax/tex-chtml.js``.
TARGET = "assets/mathjax"
#: The combined component the site loads (TeX input, CommonHTML output, menu).
COMPONENT = "tex-chtml.js"
#: Folders of ``es5/`` that the component loads from on demand: ``output/chtml/fonts`` (always),
#: ``input/tex/extensions`` (autoloaded macros), ``ui`` and ``a11y`` and ``sre`` (menu choices),
#: ``output/svg`` (the menu's other renderer), ``adaptors``.
ON_DEMAND = ("a11y", "adaptors", "input", "output", "sre", "ui")


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax distribution.

    Raises
    ------
    mkdocs.exceptions.PluginError
        When the ``docs`` extra (``django-static-mathjax``) is not installed.
    """
    try:
        root = importlib.resources.files("mathjax") / "static" / "mathjax" / "es5"
    except ModuleNotFoundError as exc:
        raise PluginError(
            "MathJax is not installed: the site bundles it from the 'django-static-mathjax' "
            "package of the docs extra (pip install -e '.[docs]')"
        ) from exc
    es5 = Path(str(root))
    if not (es5 / COMPONENT).is_file():
        raise PluginError(f"no {COMPONENT} under {es5}: expected django-static-mathjax 3.x")
    return es5


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add MathJax's component and its on-demand folders to the files of the build."""
    es5 = mathjax_source()
    paths = [es5 / COMPONENT]
    for folder in ON_DEMAND:
        paths.extend(p for p in sorted((es5 / folder).rglob("*")) if p.is_file())
    paths.append(es5.parent / "LICENSE")
    for path in paths:
        rel = path.relative_to(es5) if path.is_relative_to(es5) else Path(path.name)
        files.append(File.generated(config, f"{TARGET}/{rel.as_posix()}", abs_src_path=str(path)))
    log.debug("added %d MathJax files under %s/", len(paths), TARGET)
    return files
