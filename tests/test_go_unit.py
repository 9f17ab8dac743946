"""Go format mechanics without a server: case encoding, version order, path checks, policy hooks."""
from __future__ import annotations

import json

import pytest

from depot.registry import go_module as gm
from depot.registry.goproxy import GoProxy


def test_case_encoding_round_trips_and_refuses_upper_case() -> None:
    assert gm.escape("github.com/Azure/Go-Kit") == "github.com/!azure/!go-!kit"
    assert gm.unescape("github.com/!azure/!go-!kit") == "github.com/Azure/Go-Kit"
    for bad in ("github.com/Azure", "a/!", "a/!1"):
        with pytest.raises(gm.ModuleError):
            gm.unescape(bad)


def test_versions_sort_like_the_go_command() -> None:
    versions = ["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v1.2.0-beta", "v1.2.0-rc.10", "v0.1.0"]
    assert gm.sort_versions(versions) == ["v0.1.0", "v1.2.0-beta", "v1.2.0-rc.1", "v1.2.0-rc.10", "v1.2.0",
                                          "v1.10.0"]
    assert gm.latest(["v1.0.0", "v2.0.0-rc.1"]) == "v1.0.0"          # a release beats a newer pre-release
    assert gm.latest(["v2.0.0-rc.1", "v2.0.0-rc.2"]) == "v2.0.0-rc.2"
    assert gm.is_canonical("v1.2.3+incompatible") and not gm.is_canonical("v1.2") and not gm.is_canonical("master")


@pytest.mark.parametrize("path,version,ok", [
    ("example.com/m", "v1.0.0", True), ("example.com/m/v2", "v2.1.0", True), ("example.com/m", "v2.0.0", False),
    ("example.com/m/v2", "v1.0.0", False), ("example.com/m", "v2.0.0+incompatible", True),
    ("gopkg.in/yaml.v3", "v3.0.1", True), ("gopkg.in/yaml.v3", "v2.0.0", False)])
def test_major_version_suffix(path: str, version: str, ok: bool) -> None:
    if ok:
        gm.check_path_major(path, version)
    else:
        with pytest.raises(gm.ModuleError):
            gm.check_path_major(path, version)


@pytest.mark.parametrize("path", ["Example.com/m", "example/m", "example.com//m", "example.com/../m", "-x.com/m"])
def test_malformed_module_paths(path: str) -> None:
    with pytest.raises(gm.ModuleError):
        gm.check_path(path)


def test_go_mod_module_line() -> None:
    assert gm.module_line(b'// c\nmodule "example.com/q"\n') == "example.com/q"
    assert gm.check_go_mod(None, "example.com/m", "v1.0.0") == b"module example.com/m\n"
    with pytest.raises(gm.ModuleError):
        gm.check_go_mod(b"module example.com/other\n", "example.com/m", "v1.0.0")


def test_policy_hooks_read_times_and_filter_the_list() -> None:
    fmt = GoProxy()
    info = json.dumps({"Version": "v1.0.0", "Time": "2024-01-02T03:04:05Z"}).encode()
    found = fmt.metadata_versions("example.com/!m/@v/v1.0.0.info", info)
    assert found and found[0].package == "example.com/M" and found[0].published == 1704164645.0
    assert fmt.metadata_versions("example.com/m/@latest", info)[0].version == "v1.0.0"   # type: ignore[index]
    listed = fmt.metadata_versions("example.com/m/@v/list", b"v1.0.0\nv1.1.0\n")
    assert [v.version for v in listed or []] == ["v1.0.0", "v1.1.0"]
    assert fmt.filter_metadata("example.com/m/@v/list", b"v1.0.0\nv1.1.0\n",
                               frozenset({("example.com/m", "v1.1.0")})) == b"v1.0.0\n"
    assert fmt.metadata_versions("sumdb/sum.golang.org/latest", b"x") is None
    assert fmt.package_of("example.com/!m/@v/v1.0.0.zip") == ("example.com/M", "v1.0.0")
    assert fmt.package_of("example.com/m/@v/list") is None


def _zip(*names: str) -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in names:
            archive.writestr(name, "" if name.endswith("/") else "x")
    return buf.getvalue()


@pytest.mark.parametrize("names,error", [
    (("m.com/a@v1.0.0/", "m.com/a@v1.0.0/sub/", "m.com/a@v1.0.0/sub/a.go"), None),       # directory entries: fine
    (("m.com/a@v1.0.0/sub/go.mod",), "not in module root"),                               # a nested module
    (("m.com/a@v1.0.0/GO.MOD",), "not in module root"),
    (("m.com/a@v1.0.0/x", "m.com/a@v1.0.0/x/y.go"), "both a file and a directory"),
    (("m.com/a@v1.0.0/Sub/a.go", "m.com/a@v1.0.0/sub/b.go"), "collision"),
    (("m.com/a@v1.0.0/a.go", "m.com/a@v1.0.0/A.go"), "collision"),
    (("m.com/a@v1.0.0/con.go",), "reserved"),
    (("m.com/a@v1.0.1/a.go",), "prefix"),
])
def test_module_zip_rules(names: tuple[str, ...], error: str | None) -> None:
    if error is None:
        assert gm.check_zip(_zip(*names), "m.com/a", "v1.0.0").go_mod is None
    else:
        with pytest.raises(gm.ModuleError, match=error):
            gm.check_zip(_zip(*names), "m.com/a", "v1.0.0")


def test_snippets_name_the_repository() -> None:
    from depot.registry.repo import RepoConfig
    proxy = GoProxy.snippets(RepoConfig("go-remote", "go", "proxy", upstream="https://x"), "http://h/go-remote", "h", True)
    assert proxy == [("go", "export GOPROXY=http://h/go-remote")]
    group = GoProxy.snippets(RepoConfig("go", "go", "group"), "http://h/go", "h", True)
    assert "GONOSUMDB" in group[0][1] and "curl -u \"$REGISTRY_USER:$REGISTRY_TOKEN\" -T m.zip http://h/go/" in group[1][1]
