"""The staff web console and the one HTTP server: health, metrics, webhook, pages."""
