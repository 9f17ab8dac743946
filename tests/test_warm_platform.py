"""`depot warm` from a package-lock.json fetches the optional binaries of one platform (npm's
os/cpu/libc rules), the machine's by default, or of every platform with --all-platforms."""
from __future__ import annotations

import json

import pytest

from depot.registry import npm_platform
from depot.registry.warm_plans import plan

NATIVE = {"linux-x64-gnu": {"os": ["linux"], "cpu": ["x64"], "libc": ["glibc"]},
          "linux-x64-musl": {"os": ["linux"], "cpu": ["x64"], "libc": ["musl"]},
          "linux-arm64-gnu": {"os": ["linux"], "cpu": ["arm64"], "libc": ["glibc"]},
          "darwin-arm64": {"os": ["darwin"], "cpu": ["arm64"]},
          "win32-x64": {"os": ["win32"], "cpu": ["x64"]},
          "not-windows": {"os": ["!win32"]}}
LOCK = {"lockfileVersion": 3, "packages": {
    "": {"name": "app"},
    "node_modules/typescript": {"version": "7.0.0", "resolved": "https://r/typescript/-/typescript-7.0.0.tgz"},
    **{f"node_modules/@ts/native-{name}": {"version": "7.0.0", "optional": True,
                                           "resolved": f"https://r/@ts/native-{name}/-/native-{name}-7.0.0.tgz",
                                           **fields} for name, fields in NATIVE.items()}}}


def tarballs(platform) -> set[str]:
    jobs, _ = plan("npm", "http://d/npm", json.dumps(LOCK), platform)
    return {job.url.rsplit("/-/", 1)[1] for job in jobs if "/-/" in job.url}


@pytest.mark.parametrize("platform,expected", [
    ("linux-x64-glibc", {"native-linux-x64-gnu-7.0.0.tgz", "native-not-windows-7.0.0.tgz"}),
    ("linux-x64", {"native-linux-x64-gnu-7.0.0.tgz", "native-not-windows-7.0.0.tgz"}),      # glibc by default
    ("linux-x64-musl", {"native-linux-x64-musl-7.0.0.tgz", "native-not-windows-7.0.0.tgz"}),
    ("darwin-arm64", {"native-darwin-arm64-7.0.0.tgz", "native-not-windows-7.0.0.tgz"}),
    ("win32-x64", {"native-win32-x64-7.0.0.tgz"}),
])
def test_one_platform_gets_its_binaries_only(platform: str, expected: set[str]) -> None:
    assert tarballs(npm_platform.parse(platform)) == {"typescript-7.0.0.tgz", *expected}


def test_all_platforms_and_the_machine_default() -> None:
    assert len(tarballs(None)) == 1 + len(NATIVE)
    mine = npm_platform.machine()
    assert mine.os and mine.cpu and len(tarballs(mine)) < 1 + len(NATIVE)
    _, notes = plan("npm", "http://d/npm", json.dumps(LOCK), npm_platform.parse("darwin-arm64"))
    assert any("--all-platforms" in note and "4 packages" in note for note in notes)


@pytest.mark.parametrize("bad", ["linux", "linux-x64-uclibc", "-x64", "a-b-c-d"])
def test_bad_platform_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--platform"):
        npm_platform.parse(bad)
