"""Griffe extension: render the Sphinx roles of our docstrings as mkdocstrings cross-references.

The docstrings are Google style with Sphinx-style roles (``:meth:`send```,
``:class:`~wsregistry.Transport```), which read well in an editor but are not
Markdown. At documentation build time this extension rewrites each role into an
autorefs link to the object's canonical path (``:attr:`title <target>``` keeps its
title), resolved the way Sphinx does:
relative to the documented object, its parents, then the package. A target
outside the package (``TypeError``) becomes plain code; a target that is not
rendered on its own (an attribute without a docstring) links to its parent. An
RST ``::`` that introduces an indented code block becomes ``:``, and an RST
simple table (``====  ====`` borders) becomes a Markdown table.

Enabled in ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
Nothing here runs when the library is used.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):`([^`]+)`")
_TITLED = re.compile(r"(.*?)\s*<~?([\w.]+)>")
_LITERAL_BLOCK = re.compile(r"::\n(\s*\n)")
_TABLE_BORDER = re.compile(r"\s*=+(?: +=+)+\s*")


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
        text = match.group(1)
        titled = _TITLED.fullmatch(text)
        if titled:
            title, target = titled.group(1), titled.group(2)
        else:
            target = text.lstrip("~")
            title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
        path = _resolve(target, obj, pkg)
        return f"[`{title}`][{path}]" if path else f"`{title}`"

    return _markdown_tables(_LITERAL_BLOCK.sub(r":\n\1", _ROLE.sub(link, text)))


def _markdown_tables(text: str) -> str:
    """Turn each RST simple table (top, header and bottom ``===`` borders) into Markdown."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        end = _simple_table_end(lines, i)
        if end is None:
            out.append(lines[i])
            i += 1
            continue
        starts = [match.start() for match in re.finditer(r"=+", lines[i])]
        bounds = list(zip(starts, [*starts[1:], None], strict=True))
        header, *body = [
            [line[start:stop].strip() for start, stop in bounds]
            for line in lines[i + 1 : end]
            if not _TABLE_BORDER.fullmatch(line)
        ]
        out += ["", _row(header), "|" + " --- |" * len(starts), *map(_row, body), ""]
        i = end + 1
        # A table ends the list item it was in: its trailing paragraph is dedented
        # and separated from the next item, which starts a new list.
        while i < len(lines) and not lines[i].strip():
            i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("* ", "- ")):
            out.append(lines[i].strip())
            i += 1
        out.append("")
    return "\n".join(out)


def _simple_table_end(lines: list[str], i: int) -> int | None:
    """The index of the bottom border if a simple table starts at line ``i``."""
    if not _TABLE_BORDER.fullmatch(lines[i]):
        return None
    borders = 1
    for j in range(i + 1, len(lines)):
        if _TABLE_BORDER.fullmatch(lines[j]):
            borders += 1
            if borders == 3:
                return j
        elif not lines[j].strip():
            return None
    return None


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


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
        if found.is_attribute and not found.docstring and found.parent is not None:
            return str(found.parent.canonical_path)  # documented in its parent's docstring
        return str(found.canonical_path)
    return None
