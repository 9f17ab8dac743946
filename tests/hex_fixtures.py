"""Hex v3 package tarballs built here (VERSION, CHECKSUM, metadata.config, contents.tar.gz), in the
layout hex_core's r3_hex_tarball:create/2 writes."""
from __future__ import annotations

import hashlib
import io
import tarfile


def _tar(files: list[tuple[str, bytes]], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_package(name: str, version: str, deps: tuple[str, ...] = (), payload: str = "",
                 checksum: bytes | None = None) -> bytes:
    """An Erlang library package `name` whose hello/0 returns `<name>_<version>`, requiring `deps` ~> 1.0."""
    erl = (f"-module({name}).\n-export([hello/0]).\nhello() -> {name}_{version.replace('.', '_')}.\n"
           f"%% {payload}\n").encode()
    apps = "".join("," + d for d in deps)
    app = (f'{{application,{name},[{{description,"test"}},{{vsn,"{version}"}},{{registered,[]}},'
           f'{{applications,[kernel,stdlib{apps}]}},{{env,[]}},{{modules,[]}}]}}.\n').encode()
    contents = _tar([(f"src/{name}.erl", erl), (f"src/{name}.app.src", app)], True)
    reqs = ",".join(f'{{<<"{d}">>,[{{<<"app">>,<<"{d}">>}},{{<<"optional">>,false}},'
                    f'{{<<"requirement">>,<<"~> 1.0">>}},{{<<"repository">>,<<"hexpm">>}}]}}' for d in deps)
    meta = (f'{{<<"name">>,<<"{name}">>}}.\n{{<<"version">>,<<"{version}">>}}.\n{{<<"app">>,<<"{name}">>}}.\n'
            f'{{<<"build_tools">>,[<<"rebar3">>]}}.\n{{<<"description">>,<<"test">>}}.\n'
            f'{{<<"licenses">>,[<<"MIT">>]}}.\n{{<<"files">>,[<<"src/{name}.erl">>,<<"src/{name}.app.src">>]}}.\n'
            f'{{<<"requirements">>,[{reqs}]}}.\n').encode()
    inner = checksum or hashlib.sha256(b"3" + meta + contents).hexdigest().upper().encode()
    return _tar([("VERSION", b"3"), ("CHECKSUM", inner), ("metadata.config", meta),
                 ("contents.tar.gz", contents)], False)
