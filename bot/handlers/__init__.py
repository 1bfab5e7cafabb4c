"""Telegram handlers, one module per audience; each lists its handlers in ``handlers()``."""
