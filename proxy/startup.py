"""What `depot serve` says when it starts: where it listens, where the UI and the data are, every
repository with the URL clients use, and what is wrong with the admin account."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("depot.server")


def base_url(config: Any) -> str:
    """The URL clients reach depot at: public_url, else the listen address."""
    if config.public_url:
        return str(config.public_url).rstrip("/")
    host, port = config.host_port
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"{'https' if config.tls_cert else 'http'}://{shown}:{port}"


def mount_url(base: str, repo: Any) -> str:
    """Where a client points for this repository (containers: the image prefix)."""
    if repo.format == "oci":
        host = base.split("://", 1)[1]
        return f"{host}/{repo.name}/<image>" + (f"  (and {host}/<image> as registry mirror)" if repo.mirror else "")
    return f"{base}/{repo.name}/"


def lines(config: Any, admin: str) -> list[tuple[int, str]]:
    """(level, message) of the startup report. `admin` is proxy.access.bootstrap_admin's outcome."""
    base = base_url(config)
    out = [(logging.INFO, f"depot listening on {config.listen} ({base}/), {config.workers} worker(s)"),
           (logging.INFO, f"web UI: {base}/-/ui/"),
           (logging.INFO, f"data directory: {config.data_dir.resolve()}"),
           (logging.INFO, f"{len(config.repositories)} repositories:")]
    width = max((len(name) for name in config.repositories), default=0)
    for repo in config.repositories.values():
        kind = f"{repo.format} {repo.type}"
        out.append((logging.INFO, f"  {repo.name:{width}}  {kind:16} {mount_url(base, repo)}"))
    if config.open_access:
        out.append((logging.WARNING, "open_access is on: anyone may read and write everything"))
    elif admin.startswith("refused"):
        out.append((logging.WARNING, f"DEPOT_ADMIN_PASSWORD was refused ({admin.partition(': ')[2]}); "
                                     "no admin user exists: `depot user add admin --admin`"))
    elif admin == "absent":
        out.append((logging.WARNING, "no admin user exists: set DEPOT_ADMIN_PASSWORD at start, or run "
                                     "`depot user add admin --admin`"))
    return out


def report(config: Any, admin: str) -> None:
    """Log the startup report (stderr / the journal)."""
    for level, message in lines(config, admin):
        log.log(level, "%s", message)
