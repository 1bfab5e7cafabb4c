"""Reminder logic and persistence, free of any Telegram code."""
