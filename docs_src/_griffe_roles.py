"""Griffe extension: render the Sphinx roles of our docstrings as mkdocstrings cross-references.

The docstrings are Google style with Sphinx-style roles (``:meth:`send```,
``:class:`~wsregistry.Transport```), which read well in an editor but are not
Markdown. At documentation build time this extension rewrites each role into an
autorefs link to the object's canonical path, resolved the way Sphinx does:
relative to the documented object, its parents, then the package. A target
outside the package (``TypeError``) becomes plain code. An RST ``::`` that
introduces an indented code block becomes ``:``.

Enabled in ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
Nothing here runs when the library is used.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):`(~?)([\w.]+)`")
_LITERAL_BLOCK = re.compile(r"::\n(\s*\n)")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Walk the package once it is fully loaded."""
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is not None:
                docstring.value = _rewrite(docstring.value, obj, pkg)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


def _rewrite(text: str, obj: griffe.Object, pkg: griffe.Module) -> str:
    def link(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2)
        title = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(target, obj, pkg)
        return f"[`{title}`][{path}]" if path else f"`{title}`"

    return _LITERAL_BLOCK.sub(r":\n\1", _ROLE.sub(link, text))


def _resolve(target: str, obj: griffe.Object, pkg: griffe.Module) -> str | None:
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj
    while scope is not None:
        scopes.append(scope)
        scope = scope.parent
    for base in scopes:
        relative = target
        if base is pkg and target.startswith(pkg.name + "."):
            relative = target[len(pkg.name) + 1 :]
        try:
            found = base[relative]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        return str(found.canonical_path)
    return None
