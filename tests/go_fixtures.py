"""Go test fixtures: module zips, a GOPROXY-layout tree, the go command with a private
environment, and a real local checksum database (golang.org/x/mod/sumdb)."""
from __future__ import annotations

import io
import os
import re
import select
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

GO = shutil.which("go")
HERE = Path(__file__).resolve().parent
X_MOD_SOURCE = Path("/usr/share/gocode")         # Debian golang-golang-x-mod-dev


def escape(text: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), text)


def module_zip(path: str, version: str, files: dict[str, str]) -> bytes:
    """A module zip: every file under `path@version/`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(f"{path}@{version}/{name}", text)
    return buf.getvalue()


def go_mod(path: str, requires: dict[str, str] | None = None) -> str:
    lines = [f"module {path}", "", "go 1.18", ""]
    if requires:
        lines += ["require ("] + [f"\t{m} {v}" for m, v in requires.items()] + [")", ""]
    return "\n".join(lines)


def library(path: str, version: str, message: str, requires: dict[str, str] | None = None,
            calls: str | None = None) -> dict[str, str]:
    """Files of a small library package: `Message()` returns `message` (plus what `calls` returns)."""
    pkg = path.rsplit("/", 1)[-1].replace("-", "").replace(".", "")
    imports = f'import dep "{calls}"\n\n' if calls else ""
    suffix = ' + " " + dep.Message()' if calls else ""
    return {"go.mod": go_mod(path, requires),
            f"{pkg}.go": f'package {pkg}\n\n{imports}// Message says hello.\n'
                         f'func Message() string {{ return "{message}"{suffix} }}\n'}


def write_module(root: Path, path: str, version: str, files: dict[str, str], when: str = "2024-01-02T03:04:05Z") -> bytes:
    """Put one module version into a GOPROXY-layout tree (list, .info, .mod, .zip)."""
    base = root / escape(path) / "@v"
    base.mkdir(parents=True, exist_ok=True)
    data = module_zip(path, version, files)
    (base / f"{escape(version)}.zip").write_bytes(data)
    (base / f"{escape(version)}.mod").write_text(files.get("go.mod", f"module {path}\n"))
    (base / f"{escape(version)}.info").write_text(f'{{"Version":"{version}","Time":"{when}"}}')
    listed = (base / "list").read_text().split() if (base / "list").exists() else []
    (base / "list").write_text("".join(v + "\n" for v in sorted(set(listed) | {version})))
    return data


def go_env(tmp: Path, proxy: str, sumdb: str = "off", extra: dict[str, str] | None = None) -> dict[str, str]:
    """A private environment for the go command: nothing shared, nothing from the internet."""
    assert GO, "the go command is missing (apt-get install golang-go; see tests/clients/go.apt)"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GO") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    home = tmp / "gohome"
    home.mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "GOPATH": str(tmp / "gopath"), "GOMODCACHE": str(tmp / "gopath" / "mod"),
                "GOCACHE": str(tmp / "gocache"), "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod",
                "GOPROXY": proxy, "GOSUMDB": sumdb, "GONOSUMDB": "", "GOPRIVATE": "", "GONOPROXY": "",
                "GO111MODULE": "on", "GOENV": "off", "NO_PROXY": "*", "CGO_ENABLED": "0"})
    env.update(extra or {})
    return env


def run_go(env: dict[str, str], cwd: Path, *args: str, check: bool = True,
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
    assert GO, "the go command is missing (apt-get install golang-go; see tests/clients/go.apt)"
    result = subprocess.run([GO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"go {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def clean_modcache(env: dict[str, str], cwd: Path) -> None:
    """Empty the private module cache (it is read-only on disk, as go writes it)."""
    run_go(env, cwd, "clean", "-modcache")


def consumer(tmp: Path, name: str, requires: dict[str, str], imports: list[str]) -> Path:
    """A main module that imports `imports` and prints their Message()."""
    work = tmp / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(go_mod(f"example.com/{name}", requires))
    aliases = [f"m{i}" for i in range(len(imports))]
    body = "\n".join(f'\tfmt.Println({a}.Message())' for a in aliases)
    (work / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n' + "".join(f'\t{a} "{p}"\n' for a, p in zip(aliases, imports))
        + ")\n\nfunc main() {\n" + body + "\n}\n")
    return work


# ------------------------------------------------------------------------- checksum database

@dataclass
class SumDB:
    """The sumdb helper (tests/go_sumdb/main.go): module files at /, the database at /sumdb/<name>/."""

    proc: subprocess.Popen[bytes]
    url: str
    vkey: str
    name: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def build_sumdb(out: Path) -> Path:
    """Compile the checksum database helper against Debian's golang.org/x/mod (GOPATH mode, offline)."""
    assert (X_MOD_SOURCE / "src/golang.org/x/mod/sumdb/server.go").exists(), \
        "golang.org/x/mod is missing (apt-get install golang-golang-x-mod-dev; see tests/clients/go.apt)"
    binary = out / "sumdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update({"GO111MODULE": "off", "GOPATH": str(X_MOD_SOURCE), "GOCACHE": str(out / "gocache"),
                "GOTOOLCHAIN": "local", "GOPROXY": "off", "CGO_ENABLED": "0"})
    subprocess.run([GO or "go", "build", "-o", str(binary), str(HERE / "go_sumdb" / "main.go")],
                   env=env, check=True, capture_output=True, timeout=300)
    return binary


def start_sumdb(binary: Path, tree: Path, name: str = "sum.depot.test", timeout: float = 20) -> SumDB:
    proc = subprocess.Popen([str(binary), "-dir", str(tree), "-name", name], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            lines = [proc.stdout.readline().decode().strip(), proc.stdout.readline().decode().strip()]
            break
    if len(lines) < 2 or not lines[0].startswith("PORT ") or not lines[1].startswith("VKEY "):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        raise RuntimeError(f"sumdb helper did not start: {lines}")
    return SumDB(proc, f"http://127.0.0.1:{lines[0].split()[1]}", lines[1].split()[1], name)
