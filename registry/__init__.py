"""Package formats. FORMATS maps a format name to its Format class.

A format is a module (or package) under registry/ that exports `FORMAT = <Format subclass>`;
it is found here by that attribute, so adding a format touches no shared file.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .base import Format

    FORMATS: dict[str, type[Format]]

log = logging.getLogger("depot.registry")

# the original four first, so that the embedded default lists them in this order
_FIRST = ("generic", "pypi", "npm", "oci")
_NOT_FORMATS = frozenset({"base", "repo", "options", "warm_plans", "tree"})


def _load() -> dict[str, type["Format"]]:
    from . import base
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_FORMATS]
    ordered = [n for n in _FIRST if n in names] + sorted(n for n in names if n not in _FIRST)
    formats: dict[str, type[base.Format]] = {}
    for module_name in ordered:
        module = importlib.import_module(f"{__name__}.{module_name}")
        cls = getattr(module, "FORMAT", None)
        if isinstance(cls, type) and issubclass(cls, base.Format) and cls.name:
            formats[cls.name] = cls
    return formats


_loaded: dict[str, type[Format]] | None = None


def __getattr__(name: str) -> Any:
    """FORMATS is loaded on first use (PEP 562), not when a submodule such as warm_plans is
    imported: importing every format pulls in prometheus_client, which must not happen before
    `depot serve` has chosen its multiprocess metrics directory."""
    global _loaded
    if name == "FORMATS":
        if _loaded is None:
            _loaded = _load()
        return _loaded
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
