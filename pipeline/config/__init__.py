"""Settings (every ``*Settings`` dataclass, ``settings.toml``) and secrets (API keys, cookie files,
OAuth tokens: files of mode 0600, never in the state file)."""
