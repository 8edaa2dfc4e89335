"""Griffe extension: the Sphinx conventions of the toolkit's docstrings, for the API reference.

Two conventions that Sphinx understands and griffe does not:

- ``#:`` comment lines just above an assignment document that attribute (a module constant such
  as ``aif.maths.EPS``); they become its docstring.
- Roles such as ``:func:`efe_categorical``` or ``:class:`~environments.ScenarioConfig``` name
  other objects. Each becomes a mkdocstrings cross-reference
  (```[`efe_categorical`][aif.planning.efe_categorical]```) when the target is a documented object
  of the toolkit, and plain code otherwise (Pyro, torch, private or undocumented helpers). A
  link into another package whose target is missing fails the strict build; a name that resolves
  to nothing is shown as code, and listed by ``make docs-lint``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import griffe

PACKAGES = ("aif", "generative_models", "environments", "baselines", "experiments")
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|obj|exc|const):`(~?)([^`<>]+)`")


def rewrite(text: str, target: Callable[[str], str | None]) -> str:
    """Replace every role in ``text``: a link where ``target(name)`` gives a path, else code."""

    def one(match: re.Match[str]) -> str:
        tilde, name = match.group(1), match.group(2).strip()
        shown = name.rsplit(".", 1)[-1] if tilde else name
        path = target(name)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return ROLE.sub(one, text)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def comment_doc(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment block right above line ``lineno`` (1-based) of ``lines``, or None."""
    block: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        block.append(lines[i].lstrip()[2:].removeprefix(" "))
        i -= 1
    return "\n".join(reversed(block)) or None


class SphinxRoles(griffe.Extension):
    """Attach ``#:`` comments and rewrite roles once a package is loaded, before any parsing.

    Parameters
    ----------
    packages : sequence of str, optional
        Top-level packages whose objects are linked; default the toolkit's five.
    warn_unresolved : bool, default False
        Log a warning for a role naming nothing that can be found (``make docs-lint`` sets it).
    """

    def __init__(
        self, packages: tuple[str, ...] | list[str] = PACKAGES, warn_unresolved: bool = False
    ) -> None:
        super().__init__()
        self.packages = tuple(packages)
        self.warn_unresolved = warn_unresolved

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        objects = list(_objects(pkg))
        for obj in objects:
            if obj.kind is griffe.Kind.ATTRIBUTE and obj.docstring is None and obj.lineno:
                text = comment_doc(obj.lines_collection[obj.filepath], obj.lineno)
                if text:
                    obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
        for obj in objects:
            if obj.docstring is not None and ROLE.search(obj.docstring.value):
                obj.docstring.value = rewrite(
                    obj.docstring.value, lambda name, o=obj: self.target(o, name, loader)
                )

    def target(self, obj: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str | None:
        """The path of the documented toolkit object that ``name`` means inside ``obj``, or None."""
        head, _, rest = name.partition(".")
        if head in self.packages:
            path = name
        else:
            try:
                path = obj.resolve(head) + (f".{rest}" if rest else "")
            except griffe.NameResolutionError:
                # A dotted name from outside (``torch.Tensor``) need not be imported to be named.
                return self._unresolved(obj, name) if not rest else None
        if path.split(".", 1)[0] not in self.packages:
            return None  # another library's object: shown as code
        try:
            found = loader.modules_collection[path]
        except KeyError:
            if path.split(".", 1)[0] == obj.package.name:
                return self._unresolved(obj, name)
            # In a package not loaded yet: link it; the strict build fails if it does not exist.
            return path
        if found.is_alias:
            try:
                found = found.final_target
            except griffe.AliasResolutionError:
                return self._unresolved(obj, name)
        if any(part.startswith("_") for part in found.path.split(".")) or not found.docstring:
            return None  # not rendered: private, or no docstring to show
        return found.path

    def _unresolved(self, obj: griffe.Object, name: str) -> None:
        if self.warn_unresolved:
            griffe.logger.warning(
                f"{obj.relative_filepath}:{obj.lineno}: role target {name!r} not found from {obj.path}"
            )
