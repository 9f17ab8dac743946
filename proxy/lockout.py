"""Moved to depot.cache.lockout (storage lives in cache/); kept so older imports still work."""
from depot.cache.lockout import *  # noqa: F401,F403
