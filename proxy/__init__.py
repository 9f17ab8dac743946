"""The front door: aiohttp app, routing /<repo>/… to formats, service endpoints, CLI."""
