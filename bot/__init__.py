"""The Telegram side of remindbot: handlers, texts, i18n glue and the command line."""
