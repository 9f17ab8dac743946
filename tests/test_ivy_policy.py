"""The supply-chain policy for Ivy-layout repositories (`format: maven`, `layout: ivy`), with Debian's
real ivy: the layout has no version listing to filter (Ivy's URL resolver lists no directories
through depot), so a hidden revision is refused where Ivy fetches it, its ivy.xml and artifacts (403
naming the rule), while allowed revisions resolve. Checked for issue 18 ("every format")."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import requests

from depot_process import DepotProcess
from test_maven import IVY_JAR, ivy_layout_settings, run_tool

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def _jar(path: Path, revision: str) -> bytes:
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nImplementation-Version: {revision}\n")
    return path.read_bytes()


def test_hidden_revisions_are_refused_where_ivy_fetches_them(depot_factory: Any, tmp_path: Path) -> None:
    assert IVY_JAR.is_file(), "ivy is required (Debian ivy, tests/clients/maven.apt)"
    upstream = depot_factory({"ivy-local": {"format": "maven", "type": "hosted", "options": {"layout": "ivy"}}},
                             name="up")
    jars = {}
    for revision in ("1.0", "1.1"):
        base = f"{upstream.url}/ivy-local/org.acme/hello/{revision}"
        ivy = (f'<ivy-module version="2.0"><info organisation="org.acme" module="hello" revision="{revision}"/>'
               '<publications><artifact name="hello" type="jar" ext="jar"/></publications></ivy-module>')
        jars[revision] = _jar(tmp_path / f"hello-{revision}.jar", revision)
        assert requests.put(f"{base}/ivy-{revision}.xml", data=ivy.encode(), auth=ADMIN, timeout=10).status_code == 201
        assert requests.put(f"{base}/jars/hello-{revision}.jar", data=jars[revision], auth=ADMIN,
                            timeout=10).status_code == 201
    front = depot_factory({"ivy-remote": {"format": "maven", "type": "proxy", "upstream": f"{upstream.url}/ivy-local/",
                                          "options": {"layout": "ivy"}}},
                          extra={"policy": {"deny": ["org.acme:hello@>=1.1"]}}, name="front")
    url = f"{front.url}/ivy-remote"
    for revision, allowed in (("1.0", True), ("1.1", False)):
        conf = ivy_layout_settings(tmp_path / f"ivy-{revision}.xml", url, tmp_path / f"cache-{revision}")
        out = tmp_path / f"out-{revision}"
        resolved = run_tool(["java", "-jar", str(IVY_JAR), "-settings", str(conf), "-dependency", "org.acme", "hello",
                             revision, "-retrieve", f"{out}/[artifact]-[revision].[ext]"], tmp_path)
        assert (resolved.returncode == 0) is allowed, resolved.stdout[-3000:] + resolved.stderr[-2000:]
        if allowed:
            assert (out / f"hello-{revision}.jar").read_bytes() == jars[revision]
    for path in ("org.acme/hello/1.1/ivy-1.1.xml", "org.acme/hello/1.1/jars/hello-1.1.jar"):
        refused = requests.get(f"{url}/{path}", timeout=10)
        assert refused.status_code == 403 and "org.acme:hello@>=1.1" in refused.text, path
        assert refused.headers["X-Depot-Policy"] == "deny matches org.acme:hello@>=1.1"
