"""RubyGems test helpers: gems built by the real `gem build`, and the gem/bundler environment
(private GEM_HOME, BUNDLE_PATH, HOME: nothing from the machine's configuration)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

for tool in ("ruby", "gem", "bundle"):
    if shutil.which(tool) is None:            # a missing client fails loudly, never skips
        raise RuntimeError(f"{tool} is not installed: see tests/clients/rubygems.apt")


def build_gem(root: Path, name: str, version: str, deps: dict[str, list[str]] | None = None,
              body: str = "", platform: str | None = None) -> Path:
    """A .gem built by `gem build` (lib/<name>.rb defines a module answering `hi`)."""
    tag = hashlib.sha1(f"{body}|{platform}|{deps}".encode()).hexdigest()[:8]
    src = root / f"src-{name}-{version}-{tag}"
    (src / "lib").mkdir(parents=True, exist_ok=True)
    module = "".join(part.capitalize() for part in name.split("_"))
    (src / "lib" / f"{name}.rb").write_text(f'module {module}; def self.hi; "{name} {version}{body}"; end; end\n')
    lines = [f's.name = "{name}"', f's.version = "{version}"', 's.summary = "test gem"', 's.authors = ["depot"]',
             f's.files = ["lib/{name}.rb"]', 's.license = "MIT"']
    if platform:
        lines.append(f's.platform = "{platform}"')
    for dep, reqs in (deps or {}).items():
        lines.append(f's.add_runtime_dependency "{dep}", ' + ", ".join(f'"{r}"' for r in reqs))
    (src / f"{name}.gemspec").write_text("Gem::Specification.new do |s|\n  " + "\n  ".join(lines) + "\nend\n")
    subprocess.run(["gem", "build", f"{name}.gemspec"], cwd=src, env=gem_env(root), check=True,
                   capture_output=True, timeout=60)
    built = next(src.glob(f"{name}-{version}*.gem"))
    return built


def gem_env(root: Path, name: str = "home", key: str | None = None) -> dict[str, str]:
    """A clean environment for gem and bundle under root/<name>."""
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEM_", "BUNDLE_", "RUBY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))}
    env.update(HOME=str(home), GEM_HOME=str(home / "gems"), GEM_PATH=str(home / "gems"),
               BUNDLE_PATH=str(home / "bundle"), BUNDLE_USER_HOME=str(home / "bundle-home"),
               BUNDLE_APP_CONFIG=str(home / "bundle-config"), NO_PROXY="127.0.0.1")
    if key:
        env["GEM_HOST_API_KEY"] = key
    return env


def run(env: dict[str, str], *args: str, cwd: Path | None = None, check: bool = True) -> Any:
    done = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def push(env: dict[str, str], gem: Path, host: str, check: bool = True) -> Any:
    return run(env, "gem", "push", str(gem), "--host", host, check=check)


def gem_install(env: dict[str, str], source: str, name: str, *extra: str, check: bool = True) -> Any:
    return run(env, "gem", "install", "--no-document", "--clear-sources", "--source", source, name, *extra,
               check=check)


def bundle_install(env: dict[str, str], app: Path, source: str, gems: dict[str, str], check: bool = True) -> Any:
    """`bundle install` of a Gemfile naming `gems` (name -> requirement) from `source`."""
    app.mkdir(parents=True, exist_ok=True)
    lines = [f'source "{source}"'] + [f'gem "{n}", "{r}"' if r else f'gem "{n}"' for n, r in gems.items()]
    (app / "Gemfile").write_text("\n".join(lines) + "\n")
    return run(env, "bundle", "install", cwd=app, check=check)


def locked(app: Path) -> dict[str, str]:
    """name -> version of the GEM specs in Gemfile.lock."""
    import re
    return dict(re.findall(r"^    ([A-Za-z0-9._-]+) \(([^)]+)\)$", (app / "Gemfile.lock").read_text(), re.M))


def ruby_load(data: bytes, expr: str, tmp: Path) -> str:
    """Evaluate `expr` (Ruby, with `d` = Marshal.load(data)) with the real ruby."""
    blob = tmp / "marshal.bin"
    blob.write_bytes(data)
    done = subprocess.run(["ruby", "-e", f'require "rubygems"; d = Marshal.load(File.binread("{blob}")); {expr}'],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return done.stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
