"""Formats reach the engine only through the Ctx (issue 11): no format module touches
`ctx.services` (or any other `.services`), whatever the import contract can see.

import-linter checks which modules a format imports; this checks what it does with the objects
it is handed, which an import contract cannot: `ctx.services.catalog` needs no import at all.
"""
from __future__ import annotations

import ast
from pathlib import Path

REGISTRY = Path(__file__).resolve().parent.parent / "registry"
# the Ctx itself (it builds ctx.pull / ctx.hosted from the services)
ALLOWED = {"base.py"}


def services_uses(path: Path) -> list[int]:
    """Lines of `path` that read an attribute named `services`."""
    tree = ast.parse(path.read_text(), str(path))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr == "services")


def test_no_format_uses_ctx_services() -> None:
    offenders = {path.name: lines for path in sorted(REGISTRY.glob("*.py"))
                 if path.name not in ALLOWED and (lines := services_uses(path))}
    assert offenders == {}, f"formats reaching into ctx.services (use ctx.pull / ctx.hosted / Ctx): {offenders}"


def test_the_original_formats_are_checked() -> None:
    """The check above covers the formats that moved (a rename would silently skip them)."""
    checked = {path.name for path in REGISTRY.glob("*.py")} - ALLOWED
    assert {"pypi.py", "pypi_upload.py", "npm.py", "npm_search.py", "npm_policy.py", "oci.py", "oci_proxy.py",
            "oci_manifest.py", "oci_store.py", "oci_uploads.py", "oci_admin.py"} <= checked
