"""The web console (issue 17): aiohttp app over the same clients as the CLI."""
