"""Composer test helpers: dist zips built in Python, and composer runs with a private
COMPOSER_HOME / COMPOSER_CACHE_DIR and a composer.json that never reaches Packagist."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

for tool in ("composer", "php", "unzip"):
    if shutil.which(tool) is None:            # a missing client fails loudly, never skips
        raise RuntimeError(f"{tool} is not installed: see tests/clients/composer.apt")


def package_zip(name: str, requires: dict[str, str] | None = None, top: str | None = None,
                extra: dict[str, Any] | None = None, message: str = "") -> bytes:
    """A dist zip of `name` (vendor/pkg): composer.json plus src/<Class>.php answering hi()."""
    vendor, pkg = name.split("/")
    namespace = f"{vendor.capitalize()}\\{pkg.capitalize()}"
    composer = {"name": name, "description": f"{name} for tests", "type": "library", "license": "MIT",
                "autoload": {"psr-4": {namespace + "\\": "src/"}}, "require": requires or {}, **(extra or {})}
    calls = "".join(f' . " " . \\{d.split("/")[0].capitalize()}\\{d.split("/")[1].capitalize()}\\Hello::hi()'
                    for d in (requires or {}))
    php = (f"<?php\nnamespace {namespace};\nclass Hello {{ public static function hi() "
           f"{{ return \"{name}{message}\"{calls}; }} }}\n")
    out = io.BytesIO()
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(prefix + "composer.json", json.dumps(composer))
        zf.writestr(prefix + "src/Hello.php", php)
    return out.getvalue()


def composer_env(root: Path, name: str = "c") -> dict[str, str]:
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSER")
           and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(COMPOSER_HOME=str(home / "home"), COMPOSER_CACHE_DIR=str(home / "cache"),
               COMPOSER_ALLOW_SUPERUSER="1", COMPOSER_NO_INTERACTION="1", HOME=str(home))
    return env


def write_app(app: Path, repo_url: str, requires: dict[str, str], **config: Any) -> Path:
    app.mkdir(parents=True, exist_ok=True)
    doc = {"name": "test/app", "repositories": [{"type": "composer", "url": repo_url}, {"packagist.org": False}],
           "config": {"secure-http": False, **config}, "require": requires}
    (app / "composer.json").write_text(json.dumps(doc))
    for stale in ("composer.lock", "vendor"):
        target = app / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return app


def composer(env: dict[str, str], app: Path, *args: str, check: bool = True) -> Any:
    done = subprocess.run(["composer", *args, "--no-interaction", "--no-progress"], cwd=app, env=env,
                          capture_output=True, text=True, timeout=240)
    if check and done.returncode != 0:
        raise AssertionError(f"composer {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def run_php(app: Path, expr: str) -> str:
    code = f'require "vendor/autoload.php"; echo {expr};'
    return subprocess.run(["php", "-r", code], cwd=app, capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


def locked(app: Path) -> dict[str, str]:
    lock = json.loads((app / "composer.lock").read_text())
    return {p["name"]: p["version"] for p in lock["packages"]}
