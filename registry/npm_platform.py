"""npm's platform fields (`os`, `cpu`, `libc` of a package, as in package-lock.json) and the
platform `depot warm` fills for: the machine's own by default, or every one (build farms)."""
from __future__ import annotations

import platform as host
import sys
from dataclasses import dataclass
from typing import Any

# Python's names -> node's process.platform / process.arch
OS_NAMES = {"linux": "linux", "darwin": "darwin", "win32": "win32", "cygwin": "win32", "freebsd": "freebsd",
            "openbsd": "openbsd", "aix": "aix", "sunos5": "sunos"}
CPU_NAMES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i386": "ia32", "i686": "ia32",
             "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64", "ppc64": "ppc64", "s390x": "s390x",
             "riscv64": "riscv64", "loongarch64": "loong64"}


@dataclass(frozen=True)
class Platform:
    """One npm platform: os, cpu and (Linux) libc; `libc` None where there is none."""

    os: str
    cpu: str
    libc: str | None = None

    def __str__(self) -> str:
        return "-".join(p for p in (self.os, self.cpu, self.libc) if p)

    def accepts(self, entry: dict[str, Any]) -> bool:
        """Whether npm would install a package with these `os`/`cpu`/`libc` fields here."""
        return all(_allowed(entry.get(field), value)
                   for field, value in (("os", self.os), ("cpu", self.cpu), ("libc", self.libc)))


def _allowed(rule: Any, value: str | None) -> bool:
    """npm's rule: listed names allow only those, `!name` excludes; absent means any."""
    if rule is None:
        return True
    names = [rule] if isinstance(rule, str) else [str(n) for n in rule]
    if value is None:                   # e.g. libc on macOS: a libc-specific package is not for it
        return not [n for n in names if not n.startswith("!")]
    if f"!{value}" in names:
        return False
    wanted = [n for n in names if not n.startswith("!")]
    return not wanted or value in wanted or "any" in wanted


def machine() -> Platform:
    """This machine's platform, in npm's names."""
    os_name = OS_NAMES.get(sys.platform, sys.platform)
    cpu = CPU_NAMES.get(host.machine().lower(), host.machine().lower())
    libc = None
    if os_name == "linux":
        libc = "glibc" if host.libc_ver()[0] == "glibc" else "musl"
    return Platform(os_name, cpu, libc)


def parse(text: str) -> Platform:
    """`linux-x64`, `linux-arm64-musl`, `darwin-arm64`, `win32-x64` -> Platform (ValueError if not)."""
    parts = text.strip().split("-")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"--platform {text!r}: expected OS-CPU or OS-CPU-LIBC, e.g. linux-x64-glibc or darwin-arm64")
    if len(parts) == 3 and parts[2] not in ("glibc", "musl"):
        raise ValueError(f"--platform {text!r}: libc is glibc or musl")
    libc = parts[2] if len(parts) == 3 else ("glibc" if parts[0] == "linux" else None)
    return Platform(parts[0], parts[1], libc)
