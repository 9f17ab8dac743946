"""Package formats. FORMATS maps a format name to its Format class (one module each)."""
from __future__ import annotations

import importlib
import logging

from .base import Format

log = logging.getLogger("depot.registry")

# format name -> module under registry/ exporting FORMAT (a Format subclass)
_MODULES = {
    "generic": "depot.registry.generic",
    "pypi": "depot.registry.pypi",
    "npm": "depot.registry.npm",
    "oci": "depot.registry.oci",
}


def _load() -> dict[str, type[Format]]:
    formats: dict[str, type[Format]] = {}
    for name, module_name in _MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        formats[name] = module.FORMAT
    return formats


FORMATS: dict[str, type[Format]] = _load()
