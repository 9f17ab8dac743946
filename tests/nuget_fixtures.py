"""NuGet test helpers: tiny .nupkg files and the two real clients (NuGet.exe 5.8 for v3 on mono,
Debian's nuget 2.8 for v2), each run with a private HOME so no machine state is used."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUGET58 = Path(os.environ.get("NUGET58_EXE", ROOT / ".venv" / "nuget-exe" / "node_modules" / "nuget-exe" /
                              "nuget-5.8.0.exe"))


def require_clients() -> None:
    """A missing client fails the run loudly (tests/clients/nuget.sh installs them)."""
    missing = [str(p) for p in (NUGET58,) if not p.exists()]
    missing += [c for c in ("mono", "nuget") if shutil.which(c) is None]
    assert not missing, f"NuGet clients missing (run tests/clients/nuget.sh): {missing}"


def nuspec(package_id: str, version: str, deps: dict[str, str] | None = None, description: str = "test") -> str:
    dep_xml = "".join(f'<dependency id="{d}" version="{v}"/>' for d, v in (deps or {}).items())
    group = f'<dependencies><group targetFramework=".NETStandard2.0">{dep_xml}</group></dependencies>' if deps \
        else ""
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd"><metadata>'
            f"<id>{package_id}</id><version>{version}</version><authors>depot</authors>"
            f"<description>{description}</description>{group}</metadata></package>")


def nupkg(package_id: str, version: str, deps: dict[str, str] | None = None, payload: str = "hello",
          description: str = "test") -> bytes:
    """A minimal package as `nuget pack` lays it out (nuspec at the root, a lib file)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{package_id}.nuspec", nuspec(package_id, version, deps, description))
        archive.writestr("lib/netstandard2.0/payload.txt", payload)
        archive.writestr("_rels/.rels",
                         '<?xml version="1.0" encoding="utf-8"?><Relationships '
                         'xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                         '<Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" '
                         f'Target="/{package_id}.nuspec" Id="R1"/></Relationships>')
        archive.writestr("[Content_Types].xml",
                         '<?xml version="1.0" encoding="utf-8"?><Types '
                         'xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                         '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                         '<Default Extension="nuspec" ContentType="application/octet"/>'
                         '<Default Extension="txt" ContentType="application/octet"/></Types>')
    return out.getvalue()


def write_nupkg(folder: Path, package_id: str, version: str, **kwargs: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{package_id}.{version}.nupkg"
    path.write_bytes(nupkg(package_id, version, **kwargs))  # type: ignore[arg-type]
    return path


def client_env(home: Path) -> dict[str, str]:
    """A private HOME (NuGet.Config, http cache, global packages) and no proxy variables."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("NUGET")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), NUGET_PACKAGES=str(home / "packages"),
               NUGET_HTTP_CACHE_PATH=str(home / "http-cache"), MONO_ENV_OPTIONS="")
    return env


def nuget58(home: Path, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """NuGet.exe 5.8 (v3 client) on mono."""
    result = subprocess.run(["mono", str(NUGET58), *args, "-NonInteractive"], env=client_env(home),
                            capture_output=True, text=True, timeout=timeout, cwd=home)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def nuget28(home: Path, *args: str, check: bool = True, timeout: float = 180,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Debian's nuget 2.8 (v2 OData client). It resolves even absolute package paths against its
    working directory: push from the package's folder with the bare file name (`cwd`)."""
    result = subprocess.run(["nuget", *args, "-NonInteractive"], env=client_env(home), capture_output=True,
                            text=True, timeout=timeout, cwd=cwd or home)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def installed(out: Path, package_id: str, version: str) -> Path:
    """The payload nuget install unpacked (OutputDirectory/<Id>.<Version>/lib/…)."""
    return out / f"{package_id}.{version}" / "lib" / "netstandard2.0" / "payload.txt"


def nuget28_tty(home: Path, *args: str, timeout: float = 120) -> str:
    """nuget 2.8 on a pseudo-terminal 200 columns wide; its output. `nuget list` justifies its
    lines to the console width, and with no console (stdout a pipe) mono reports a width of 0:
    nuget 2.8 then prints blank lines forever, whatever the feed. A runaway is killed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(["nuget", *args, "-NonInteractive"], env=client_env(home), cwd=home,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < 4_000_000:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:           # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"nuget {' '.join(args)} did not finish: {bytes(out[:2000])!r}")
        assert proc.wait(timeout=30) == 0, out.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        os.close(master)
    text = out.decode("utf-8", "replace").replace("\r", "")
    return re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|[=>])", "", text)      # the terminal's escape sequences
