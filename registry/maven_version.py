"""Maven version ordering (a compact form of Maven's ComparableVersion).

Versions are split into numbers and words at '.', '-' and digit/letter transitions; words are
qualifiers ranked alpha < beta < milestone < rc < snapshot < (release) < sp < anything else
(alphabetically); trailing zeros and release qualifiers do not count ("1.0" == "1").
"""
from __future__ import annotations

import functools
import re

QUALIFIERS = {"alpha": 0, "a": 0, "beta": 1, "b": 1, "milestone": 2, "m": 2, "rc": 3, "cr": 3,
              "snapshot": 4, "": 5, "ga": 5, "final": 5, "release": 5, "sp": 6}
UNKNOWN = 7
Item = tuple[int, int, str]          # (1, number, "") or (0, qualifier rank, unknown word)
PADDING: Item = (0, QUALIFIERS[""], "")
ZEROES = ((1, 0, ""), PADDING)


def items(version: str) -> list[Item]:
    """The comparable items of a version string."""
    out: list[Item] = []
    for segment in version.lower().split("-"):      # zeros end each '-' segment: 1.0-rc == 1-rc
        found: list[Item] = []
        for part in re.findall(r"\d+|[a-z]+", segment):
            if part.isdigit():
                found.append((1, int(part), ""))
            else:
                rank = QUALIFIERS.get(part)
                found.append((0, rank, "") if rank is not None else (0, UNKNOWN, part))
        while found and found[-1] in ZEROES:
            found.pop()
        out.extend(found)
    return out


def compare(left: str, right: str) -> int:
    """-1, 0 or 1 as Maven orders the two versions."""
    a, b = items(left), items(right)
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else PADDING
        y = b[index] if index < len(b) else PADDING
        if x != y:
            return -1 if x < y else 1
    return 0


version_key = functools.cmp_to_key(compare)


def is_snapshot(version: str) -> bool:
    """A SNAPSHOT (moving) version."""
    return version.endswith("-SNAPSHOT")


def sort_versions(versions: set[str] | list[str]) -> list[str]:
    """Distinct versions, oldest first."""
    return sorted(set(versions), key=version_key)
