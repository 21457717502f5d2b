"""How the parts are wired into `pitcrew serve`'s aiohttp application: cleanup contexts and handlers
that read the app's state (`bot/keys.py`). The services they start know nothing of aiohttp's app."""
