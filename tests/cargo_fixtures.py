"""Cargo test fixtures: crates on disk, a private CARGO_HOME, cargo runs, and a static sparse
index tree (config.json, index files, .crate files) for tests/upstream.py."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

CARGO = shutil.which("cargo")


def index_path(name: str) -> str:
    lower = name.lower()
    if len(lower) <= 2:
        return f"{len(lower)}/{lower}"
    if len(lower) == 3:
        return f"3/{lower[0]}/{lower}"
    return f"{lower[:2]}/{lower[2:4]}/{lower}"


def cargo_home(tmp: Path, registries: dict[str, str], replace_crates_io: str | None = None,
               name: str = "cargo-home") -> Path:
    """A private CARGO_HOME whose config.toml names `registries` (name -> depot repository URL)."""
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    lines = []
    for reg, url in registries.items():
        lines += [f"[registries.{reg}]", f'index = "sparse+{url}/"', ""]
    if replace_crates_io:
        lines += ["[source.crates-io]", f'replace-with = "{replace_crates_io}-src"', "",
                  f"[source.{replace_crates_io}-src]", f'registry = "sparse+{registries[replace_crates_io]}/"', ""]
    # a private registry (401 on config.json) needs a credential provider named explicitly
    lines += ["[registry]", 'global-credential-providers = ["cargo:token"]', "", "[net]", "retry = 0", ""]
    (home / "config.toml").write_text("\n".join(lines))
    return home


def cargo_env(home: Path, target: Path, tokens: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for cargo: the private CARGO_HOME and target dir, nothing of the machine's."""
    assert CARGO, "cargo is missing (the machine's rustup toolchain; see tests/clients/cargo.check)"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CARGO_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({"CARGO_HOME": str(home), "CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never",
                "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
                "CARGO_HTTP_TIMEOUT": "30", "CARGO_NET_RETRY": "0"})
    for reg, token in (tokens or {}).items():
        env[f"CARGO_REGISTRIES_{reg.upper().replace('-', '_')}_TOKEN"] = token
    return env


def run_cargo(env: dict[str, str], cwd: Path, *args: str, check: bool = True, input: str | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert CARGO, "cargo is missing (the machine's rustup toolchain; see tests/clients/cargo.check)"
    result = subprocess.run([CARGO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"cargo {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def write_crate(root: Path, name: str, version: str, deps: dict[str, str] | None = None,
                message: str | None = None, binary: bool = False) -> Path:
    """A crate directory: a library whose `message()` returns `message` followed by its deps'
    messages (`deps`: name -> dependency spec in TOML), or a binary printing that."""
    work = root / f"{name}-{version}"
    (work / "src").mkdir(parents=True, exist_ok=True)
    deps = deps or {}
    manifest = [f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2021"\n'
                f'description = "test crate {name}"\nlicense = "MIT"\n', "[dependencies]"]
    manifest += [f"{dep} = {spec}" for dep, spec in deps.items()]
    (work / "Cargo.toml").write_text("\n".join(manifest) + "\n")
    parts = [f'"{message or name}".to_string()'] + [f"{d.replace('-', '_')}::message()" for d in deps]
    expr = ' + " " + &'.join(parts) if len(parts) > 1 else parts[0]
    if binary:
        (work / "src" / "main.rs").write_text(f"fn main() {{\n    let m: String = {expr};\n    println!(\"{{}}\", m);\n}}\n")
    else:
        (work / "src" / "lib.rs").write_text(f"pub fn message() -> String {{\n    {expr}\n}}\n")
    return work


# ------------------------------------------------------------------ a static sparse index tree

def crate_bytes(name: str, version: str, body: str = "") -> bytes:
    """A .crate: gzip tarball of name-version/{Cargo.toml,src/lib.rs}."""
    files = {"Cargo.toml": f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2021"\n',
             "src/lib.rs": f'pub fn message() -> String {{ "{name}{body}".to_string() }}\n'}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def static_registry(root: Path, upstream_url: str, crates: dict[tuple[str, str], bytes]) -> None:
    """config.json, index files and .crate files of a sparse registry served as static files."""
    (root / "config.json").write_text(json.dumps({"dl": upstream_url + "/dl/{crate}/{crate}-{version}.crate",
                                                  "api": upstream_url}))
    lines: dict[str, list[str]] = {}
    for (name, version), data in crates.items():
        entry = {"name": name, "vers": version, "deps": [], "cksum": hashlib.sha256(data).hexdigest(),
                 "features": {}, "yanked": False, "links": None}
        lines.setdefault(name, []).append(json.dumps(entry))
        target = root / "dl" / name / f"{name}-{version}.crate"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for name, entries in lines.items():
        path = root / index_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(entries) + "\n")


def publish_frame(metadata: dict[str, object], crate: bytes) -> bytes:
    """The body of PUT /api/v1/crates/new."""
    raw = json.dumps(metadata).encode()
    return struct.pack("<I", len(raw)) + raw + struct.pack("<I", len(crate)) + crate
