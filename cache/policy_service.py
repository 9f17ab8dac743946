"""The supply-chain policy at run time: rules per repository, the imported advisories, the
publish times seen in metadata, the decisions counted, audited and explained.

Formats do not call this directly: `Ctx.pull.answer()` filters metadata documents through it and
`Ctx.open_upstream()` refuses downloads of hidden versions (registry/base.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cachetools import LRUCache
from prometheus_client import Counter

from . import osv
from .db import Database
from .gate import Judge, Policy, Verdict
from .policy_journal import DecisionJournal
from .types import RepoConfig

log = logging.getLogger("depot.policy")

BLOCKED = Counter("depot_policy_blocked_total", "Versions hidden or downloads refused by the supply-chain policy "
                  "(mode report: would have been)", ("repository", "format", "rule", "mode"))


@dataclass(frozen=True)
class Decision:
    """One recent decision, for the UI and the audit log."""

    at: float
    repository: str
    format: str
    package: str
    version: str | None
    rule: str
    message: str
    mode: str
    action: str                 # hidden | refused


class PolicyService:
    """Rules and advisories for every repository of this process."""

    def __init__(self, db: Database, global_policy: Policy, repos: Mapping[str, RepoConfig],
                 min_severity: str | None = None) -> None:
        self.db = db
        self.global_policy = global_policy
        self.repos = repos
        self.min_severity = min_severity
        self.advisories: dict[str, dict[str, list[Any]]] = {}
        self._generation = -1.0
        self.published: LRUCache[tuple[str, str, str], float | None] = LRUCache(maxsize=200_000)
        self.recent: deque[Decision] = deque(maxlen=500)
        self.audit: Callable[..., Any] | None = None
        self._counted: LRUCache[tuple[str, str, str | None, str], float] = LRUCache(maxsize=50_000)
        self.journal = DecisionJournal(db, Decision)     # every worker's decisions, for the API and UI

    def policy_for(self, repo: RepoConfig) -> Policy:
        """The global rules plus the repository's own; hosted repositories are exempt unless a
        rule says `hosted: true`."""
        own: Policy | None = repo.policy
        policy = self.global_policy.merged(own) if own is not None else self.global_policy
        if repo.is_hosted and not policy.apply_to_hosted:
            return Policy(generation=policy.generation)
        return policy

    def judge(self, repo: RepoConfig, scheme: str) -> Judge | None:
        """The judge of one repository, or None when no rule and no advisory concerns it."""
        policy = self.policy_for(repo)
        advisories = self.advisories.get(repo.format, {})
        if repo.is_hosted and not policy.apply_to_hosted:
            return None
        if not policy.active and not advisories:
            return None
        return Judge(policy, scheme, advisories)

    def version_key(self) -> tuple[Any, ...]:
        """Changes whenever what the rules decide may change (for caching filtered documents)."""
        return (self._generation, int(time.time() // 60))

    async def refresh(self) -> None:
        """Reload advisories when a dump was imported (cheap check; runs in housekeeping)."""
        generation = await self.db.run(osv.generation)
        if generation != self._generation:
            self.advisories = await self.db.run(lambda conn: osv.load(conn, self.min_severity))
            self._generation = generation
            log.info("policy advisories loaded formats=%d packages=%d", len(self.advisories),
                     sum(len(v) for v in self.advisories.values()))

    def remember(self, repo: str, package: str, version: str, published: float | None) -> None:
        self.published[(repo, package, version)] = published

    def publish_time(self, repo: str, package: str, version: str) -> tuple[bool, float | None]:
        key = (repo, package, version)
        return (key in self.published, self.published.get(key))

    def record(self, repo: RepoConfig, package: str, version: str | None, verdict: Verdict,
               mode: str, action: str) -> None:
        """Count and remember a decision (each (repo, package, version, rule, action) once a minute)."""
        key = (repo.name, package, version, verdict.rule + "/" + action)
        now = time.time()
        if now - self._counted.get(key, 0.0) < 60:
            return
        self._counted[key] = now
        BLOCKED.labels(repo.name, repo.format, verdict.rule, mode).inc()
        decision = Decision(now, repo.name, repo.format, package, version, verdict.rule,
                            verdict.message(package, version), mode, action)
        self.recent.appendleft(decision)
        self.journal.add(decision)
        log.info("policy %s repo=%s package=%s version=%s rule=%s mode=%s", action, repo.name, package,
                 version, verdict.rule, mode)
        if self.audit is not None:
            try:
                self.audit(decision)
            except Exception:  # the audit log must never break an answer
                log.exception("policy audit failed")


    async def decisions(self, repositories: set[str], limit: int) -> list[Decision]:
        """The newest decisions on `repositories` of every worker of this node (newest first)."""
        return await self.journal.newest(repositories, limit, list(self.recent))


async def refresh_loop(service: PolicyService, interval: float = 5.0) -> None:
    """Keep the advisories current while the server runs."""
    while True:
        try:
            await service.journal.save()      # decisions recorded off the loop
            await service.refresh()
        except Exception:
            log.exception("policy refresh failed")
        await asyncio.sleep(interval)
