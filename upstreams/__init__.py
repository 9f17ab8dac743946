"""Talking to remote registries: one shared aiohttp session per process, retries, auth."""
