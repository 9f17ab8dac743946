"""The lockfile planners of Puppet, Hex, Chef and CocoaPods (pure functions)."""
from __future__ import annotations

from depot.registry.longtail_warm import plan_berksfile_lock, plan_podfile_lock, plan_puppetfile, plan_rebar_lock

M = "http://d/r"


def test_puppetfile_pins_only() -> None:
    jobs, notes = plan_puppetfile(M, "mod 'a-b', '1.2.3'\nmod \"c/d\", \"0.1.0\"\nmod 'e-f', :latest\nmod 'g', :git => 'x'\n")
    assert [j.url for j in jobs] == [f"{M}/v3/files/a-b-1.2.3.tar.gz", f"{M}/v3/files/c-d-0.1.0.tar.gz"] and not notes
    jobs, notes = plan_puppetfile(M, "mod 'e-f', :latest\n")
    assert jobs == [] and "no module pinned" in notes[0]


def test_rebar_lock() -> None:
    text = ('{"1.2.0",\n[{<<"cowboy">>,{pkg,<<"cowboy">>,<<"2.9.0">>},0},\n'
            ' {<<"ranch">>,{pkg,<<"ranch">>,<<"1.8.0">>},1},\n {<<"x">>,{git,"https://e/x.git",{ref,"abc"}},0}]}.\n'
            '[{pkg_hash,[{<<"cowboy">>, <<"AB">>}]}].\n')
    jobs, _ = plan_rebar_lock(M, text)
    assert [j.url for j in jobs] == [f"{M}/packages/cowboy", f"{M}/tarballs/cowboy-2.9.0.tar",
                                     f"{M}/packages/ranch", f"{M}/tarballs/ranch-1.8.0.tar"]


def test_berksfile_lock_graph() -> None:
    text = ("DEPENDENCIES\n  app\n    path: .\n\nGRAPH\n  app (0.1.0)\n    apt (>= 0.0.0)\n  apt (7.4.0)\n"
            "  yum (5.1.0)\n")
    jobs, _ = plan_berksfile_lock(M, text)
    assert [j.url for j in jobs] == [f"{M}/files/app/app-0.1.0.tar.gz", f"{M}/files/apt/apt-7.4.0.tar.gz",
                                     f"{M}/files/yum/yum-5.1.0.tar.gz"]


def test_podfile_lock_podspec_then_archive() -> None:
    jobs, _ = plan_podfile_lock(M, "PODS:\n  - AFNetworking (4.0.1):\n    - AFNetworking/NSURLSession (= 4.0.1)\n"
                                   "  - AFNetworking/NSURLSession (4.0.1)\n\nDEPENDENCIES:\n  - AFNetworking\n")
    assert [j.url for j in jobs] == [f"{M}/Specs/a/7/5/AFNetworking/4.0.1/AFNetworking.podspec.json"]
    assert jobs[0].then is not None
    assert [j.url for j in jobs[0].then(b'{"source": {"http": "http://d/r/pods/A/1/A.zip"}}', jobs[0].url)] \
        == ["http://d/r/pods/A/1/A.zip"]
    assert jobs[0].then(b'{"source": {"git": "x", "tag": "1"}}', jobs[0].url) == []
