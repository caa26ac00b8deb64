"""Sphinx extension of the pyiron_assyst docs: API pages, the info-key table, optional pages.

* :func:`public_modules` finds every public module of the package (no ``_`` in its dotted
  path) that imports; :func:`write_api_pages` writes one ``api/generated/<module>.rst`` page
  per module that documents every name in its ``__all__`` (the docs test checks the same list).
* ``.. info-key-table::`` renders :func:`pyiron_assyst.core.info_keys.info_table` (never copied by
  hand).
* ``.. public-names:: module`` is an autosummary table of a module's ``__all__``.
* ``.. macro-defaults::`` shows the default of every config input of the canonical macro.
* ``.. optional-toctree::`` is a toctree that leaves out entries whose page does not exist
  (pages written by others, or excluded in ``conf.py`` because their module does not import).
"""

from __future__ import annotations

import importlib
import pkgutil
import pprint
from pathlib import Path
from types import ModuleType

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.util import docname_join, logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "pyiron_assyst"
API_DIR = Path("api") / "generated"


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _optional_dependency(error: ModuleNotFoundError) -> bool:
    """Whether a failed import only lacks a third-party package (not one of ours)."""
    return bool(error.name) and error.name.split(".")[0] != PACKAGE


def public_modules() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Public modules of the package that import, and those skipped for a missing dependency.

    Returns
    -------
    modules, skipped
        ``{dotted name: module}`` (the package itself included), and ``{dotted name: reason}``
        for modules whose import needs a third-party package that is not installed.

    Raises
    ------
    Exception
        Whatever a module raises on import for any other reason: a broken module must fail
        the docs build, not vanish from it.
    """
    package = importlib.import_module(PACKAGE)
    modules: dict[str, ModuleType] = {PACKAGE: package}
    skipped: dict[str, str] = {}
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}.", onerror=_raise):
        if not _is_public(info.name) or any(info.name.startswith(f"{s}.") for s in skipped):
            continue
        try:
            modules[info.name] = importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            if not _optional_dependency(error):
                raise
            skipped[info.name] = f"needs {error.name}"
    return dict(sorted(modules.items())), skipped


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while walking {PACKAGE}")


def public_names(module: ModuleType) -> tuple[str, ...]:
    """The names ``module`` declares public (its ``__all__``; none without one)."""
    return tuple(getattr(module, "__all__", ()))


def api_page(name: str, module: ModuleType) -> str:
    """reST source of the API page of one module: a summary table, then every public name."""
    title = f"``{name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}", ""]
    names = public_names(module)
    if names:
        lines += [".. rubric:: Public names", "", f".. currentmodule:: {name}", "",
                  ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {n}" for n in sorted(names)] + [""]
        lines += [".. rubric:: Reference", ""]
        for n in sorted(names):
            lines += _directive(name, n, getattr(module, n))
    return "\n".join(lines)


def _directive(module: str, name: str, obj: object) -> list[str]:
    """The autodoc directive (with options) for one public object."""
    if isinstance(obj, type):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        options = ["   :members:", "   :show-inheritance:"]
    elif callable(obj) and hasattr(obj, "__code__"):
        kind, options = "function", []
    else:
        kind, options = "data", []
    return [f".. auto{kind}:: {module}.{name}", *options, ""]


def write_api_pages(srcdir: Path) -> dict[str, ModuleType]:
    """Write one page per public module into ``srcdir/api/generated``; remove stale pages.

    A page is rewritten only when its text changes, so that Sphinx's incremental build works.
    """
    modules, skipped = public_modules()
    for name, reason in skipped.items():
        logger.info("pyiron_assyst docs: no API page for %s (%s)", name, reason)
    target = srcdir / API_DIR
    target.mkdir(parents=True, exist_ok=True)
    wanted = {f"{name}.rst": api_page(name, module) for name, module in modules.items()}
    for stale in target.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    for filename, text in wanted.items():
        path = target / filename
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return modules


def _builder_inited(app: Sphinx) -> None:
    write_api_pages(Path(app.srcdir))


class InfoKeyTable(SphinxDirective):
    """``.. info-key-table::``: every declared ``Atoms.info`` key with type, unit and stage."""

    has_content = False
    columns = ("name", "type", "unit", "stage", "description")
    widths = (18, 7, 5, 10, 60)

    def run(self) -> list[nodes.Node]:
        from pyiron_assyst.core.info_keys import info_table

        rows = info_table()
        table = nodes.table(classes=["info-keys"])
        group = nodes.tgroup(cols=len(self.columns))
        table += group
        group.extend(nodes.colspec(colwidth=w) for w in self.widths)
        group += nodes.thead("", self._row({c: c for c in self.columns}, header=True))
        group += nodes.tbody("", *(self._row(row) for row in rows))
        return [table]

    def _row(self, row: dict[str, str], header: bool = False) -> nodes.row:
        out = nodes.row()
        for column in self.columns:
            text = row[column]
            literal = not header and column in ("name", "type")
            inner = nodes.literal(text=text) if literal else nodes.Text(text)
            out += nodes.entry("", nodes.paragraph("", "", inner))
        return out


class MacroDefaults(SphinxDirective):
    """``.. macro-defaults::``: each default input of the canonical macro, as in the code."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from pyiron_assyst.workflow.macro import assyst

        out: list[nodes.Node] = []
        for name, default in _defaults(assyst).items():
            text = f"{name} = {pprint.pformat(default, width=88)}"
            out.append(nodes.literal_block(text, text, language="python"))
        return out


def _defaults(func) -> dict[str, object]:
    """The default values of ``func``'s parameters, read from the function itself.

    Not from :func:`inspect.signature`: ``autodoc_preserve_defaults`` replaces the signature's
    defaults by their source text once autodoc has documented the function.
    """
    code = func.__code__
    positional = code.co_varnames[:code.co_argcount]
    values = func.__defaults__ or ()
    out = dict(zip(positional[len(positional) - len(values):], values))
    out.update(func.__kwdefaults__ or {})
    return out


class PublicNames(SphinxDirective):
    """``.. public-names:: module``: an autosummary table of the module's ``__all__``.

    Use it inside ``{eval-rst}`` in Markdown pages (its output is parsed as reST).
    """

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        names = public_names(importlib.import_module(name))
        lines = [f".. currentmodule:: {name}", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {n}" for n in sorted(names)]
        return self.parse_text_to_nodes("\n".join(lines))


class OptionalTocTree(TocTree):
    """A toctree whose entries are kept only when their page exists in this build."""

    def run(self) -> list[nodes.Node]:
        found = self.env.found_docs
        kept = StringList()
        for line, (source, offset) in zip(self.content, self.content.items):
            entry = line.strip()
            docname = docname_join(self.env.docname, entry)
            if entry and docname not in found:
                continue
            kept.append(line, source, offset)
        self.content = kept
        return super().run()


def reexports() -> dict[str, str]:
    """``{documented name: canonical name}`` of every public name that is another public name
    under a second path (a package re-exporting a submodule's name, or an alias like ``And``)."""
    modules, _ = public_modules()
    out: dict[str, str] = {}
    for modname, module in modules.items():
        for name in public_names(module):
            obj = getattr(module, name)
            qualname = getattr(obj, "__qualname__", None)
            home = getattr(obj, "__module__", None)
            if not (isinstance(qualname, str) and isinstance(home, str)):
                continue
            canonical = f"{home}.{qualname}"
            if canonical != f"{modname}.{name}" and home in modules and (
                    qualname.split(".")[-1] in public_names(modules[home])):
                out[f"{modname}.{name}"] = canonical
    return out


def _mark_reexports(app: Sphinx, env: object) -> None:
    """Mark re-exported names (and their members) as aliases of the canonical ones.

    Both are documented (each is a public name of its module), and cross-references that
    Sphinx resolves by suffix (``Raises``/type fields) then go to the canonical entry instead
    of warning about two targets.
    """
    domain = app.env.get_domain("py")
    objects = domain.objects
    for alias, canonical in reexports().items():
        if canonical not in objects:
            continue
        for key in [k for k in objects if k == alias or k.startswith(f"{alias}.")]:
            if f"{canonical}{key[len(alias):]}" in objects:
                objects[key] = objects[key]._replace(aliased=True)


def excluded_pages(requirements: dict[str, tuple[str, ...]]) -> list[str]:
    """Source files to exclude because a module their page documents does not import.

    ``requirements`` maps a page (path relative to the docs, e.g. ``"stages/05-label.md"``) to
    the modules it needs.
    """
    modules, _ = public_modules()
    return [page for page, needs in requirements.items() if not set(needs) <= set(modules)]


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", _builder_inited)
    app.connect("env-check-consistency", _mark_reexports)
    app.add_directive("info-key-table", InfoKeyTable)
    app.add_directive("optional-toctree", OptionalTocTree)
    app.add_directive("public-names", PublicNames)
    app.add_directive("macro-defaults", MacroDefaults)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

