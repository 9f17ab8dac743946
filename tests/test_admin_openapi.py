"""schemathesis against the OpenAPI document a live depot serves (seeded with hosted files, an OCI
image and cached proxy entries): no 5xx, every answer matches its schema, problem details on errors."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from admin_helpers import skopeo
from depot_process import DepotProcess
from oci_fixtures import hello_layout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, module_upstream) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("openapi")
    for name in ("x/1.bin", "x/2.bin"):
        module_upstream.put(name, b"z" * 64)
    depot = DepotProcess(work / "depot", {
        "files": {"format": "generic", "type": "hosted", "cleanup": {"keep_n": 1}},
        "oci": {"format": "oci", "type": "hosted", "protected": ["^v1$"]},
        "remote": {"format": "generic", "type": "proxy", "upstream": module_upstream.url + "/",
                   "cleanup": {"unused_for": "30d"}},
    })
    try:
        for i in range(5):
            assert requests.put(f"{depot.url}/files/dir/f{i}.txt", data=b"f" * i, timeout=10).status_code == 201
        for name in ("x/1.bin", "x/2.bin"):
            assert requests.get(f"{depot.url}/remote/{name}", timeout=10).status_code == 200
        layout, _s, _i = hello_layout(work / "layout")
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout.root}:v1",
               f"docker://127.0.0.1:{depot.port}/oci/team/app:v1")
        yield SimpleNamespace(depot=depot, base=f"{depot.url}/-/api/v1")
    finally:
        depot.stop()


def check_case(case, base: str, opaque: bool) -> None:
    response = case.call(base_url=base)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    # a random `cursor` (opaque, only what the API returned is valid) or `regex` (a regular
    # expression) is rightly refused with 400: only there is "valid data accepted" not checked
    case.validate_response(response, excluded_checks=[positive_data_acceptance] if opaque else None)
    if response.status_code >= 400:
        where = f"{case.method} {case.formatted_path} {case.query}: {response.status_code} {response.text[:200]}"
        ctype = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/problem+json"), where
        assert response.json()["status"] == response.status_code


def test_every_endpoint_matches_its_schema(live: SimpleNamespace) -> None:
    """Every operation of the served document, fuzzed (schemathesis' pytest plugin does not run
    under this pytest, so each operation's hypothesis strategy is driven directly)."""
    api_schema = schemathesis.openapi.from_url(f"{live.base}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 11
    for operation in operations:
        fuzz(operation, live.base)


def fuzz(operation, base: str) -> None:
    """Up to 30 generated requests of one operation, each checked against the document."""
    opaque = any(p.name in ("cursor", "regex") for p in operation.query)

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        check_case(case, base, opaque)
    run()


def test_the_document_is_openapi_3_1(live: SimpleNamespace) -> None:
    doc = requests.get(f"{live.base}/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    assert {"/packages", "/packages/{repo}/{name}/{version}", "/images/{repo}/{image}/tags",
            "/cache/{repo}", "/cleanup"} <= set(doc["paths"])
