"""Moved to depot.cache.accounts (storage lives in cache/); kept so older imports still work."""
from depot.cache.accounts import *  # noqa: F401,F403
