"""The UI page of recent supply-chain policy decisions (`/-/ui/policy?repository=<name>`): what
was hidden from metadata or refused as a download, blocked (mode enforce) or would have been
(mode report), with time, repository, package, version, rule and reason. The same decisions as
/-/api/policy, under the same visibility rule: a repository the caller cannot read shows none
of its decisions and is not offered in the filter."""
from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from . import visibility
from .policy_api import visible_decisions

LIMIT = 500


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _filter_form(names: list[str], wanted: str) -> str:
    options = ['<option value="">all repositories</option>'] + [
        f'<option value="{e(n)}"{" selected" if n == wanted else ""}>{e(n)}</option>' for n in names]
    return ('<form class="filter" method="get" action="policy"><label>repository <select name="repository">'
            + "".join(options) + '</select></label> <button type="submit">filter</button></form>')


def _row(d: dict[str, Any]) -> str:
    outcome = ("blocked" if d["mode"] == "enforce" else "would block") + f" ({d['action']})"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d["at"]))
    repo_link = f'<a href="repositories/{e(quote(d["repository"]))}">{e(d["repository"])}</a>'
    return (f'<tr class="decision"><td>{e(when)}</td><td class="{e(d["mode"])}">{e(outcome)}</td>'
            f'<td>{repo_link}</td><td><span class="tag">{e(d["format"])}</span></td>'
            f'<td class="package">{e(d["package"])}</td><td class="version">{e(d["version"] or "")}</td>'
            f'<td class="rule"><code>{e(d["rule"])}</code></td><td class="reason">{e(d["message"])}</td></tr>')


async def policy_page(request: web.Request) -> web.Response:
    """Recent decisions, newest first, optionally of one repository."""
    from .app import SERVICES
    from .ui import _page
    services = request.app[SERVICES]
    wanted = request.query.get("repository", "")[:200]
    may_read = await visibility.readable(request)
    names = sorted(name for name, repo in services.repos.items() if may_read(repo))
    rows = await visible_decisions(request, wanted or None, LIMIT)
    policy = services.policy.global_policy
    cooldown = f", cooldown {policy.cooldown:.0f} s" if policy.cooldown else ""
    body = [f'<h1>Policy decisions</h1><p class="muted">supply-chain policy: mode <b>{e(policy.mode)}</b>'
            f'{e(cooldown)}; the newest {LIMIT} decisions of every worker, as <a href="../api/policy?'
            f'{e(urlencode({"repository": wanted}) if wanted else "")}">/-/api/policy</a> lists them</p>',
            _filter_form(names, wanted)]
    table = "".join(_row(d) for d in rows) or '<tr><td colspan="8" class="muted">no decisions yet</td></tr>'
    body.append('<table id="decisions"><thead><tr><th>time (UTC)</th><th>outcome</th><th>repository</th>'
                '<th>format</th><th>package</th><th>version</th><th>rule</th><th>reason</th></tr></thead><tbody>'
                + table + "</tbody></table>")
    return _page("policy decisions", "".join(body), "./")


def setup(app: web.Application) -> None:
    """Register /-/ui/policy."""
    app.router.add_get("/-/ui/policy", policy_page)
