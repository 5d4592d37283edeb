"""Private batch options: the secret values in a batch's options, kept out of its state file.

A batch's options are stored in its state file and shown in manifests and `status`; a proxy with a password or
a yt-dlp option carrying a header or a login must be neither. Those values live in a 0600 file per batch and
the stored options keep "***" in their place; the engine merges them back in memory when it runs the batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config.private_files import SECRETS_DIR, private_dir, secrets_dir, write_private
from pipeline.config.ytdlp_options import SECRET_OPTION, redact_ytdlp_options
from pipeline.errors import InvalidInput

BATCH_OPTIONS_DIR = "batch-options"


def split_private_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options safe to store and show, the secret values taken out of them)."""
    public = dict(options)
    private: dict[str, Any] = {}
    proxy = public.get("proxy")
    if isinstance(proxy, str) and "@" in proxy:
        private["proxy"], public["proxy"] = proxy, "***"
    ytdlp = public.get("ytdlp_options")
    if isinstance(ytdlp, Mapping):
        shown = redact_ytdlp_options(dict(ytdlp))
        hidden = {k: v for k, v in ytdlp.items() if shown.get(k) != v or SECRET_OPTION.search(str(k))}
        if hidden:
            private["ytdlp_options"] = hidden
            public["ytdlp_options"] = shown
    return public, private


def _batch_options_path(home: Path, batch_id: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", batch_id):
        raise InvalidInput(f"not a batch id: {batch_id!r}")
    return Path(home) / SECRETS_DIR / BATCH_OPTIONS_DIR / f"{batch_id}.json"


def save_private_options(home: Path, batch_id: str, private: Mapping[str, Any]) -> None:
    """Keep the batch's secret option values in its own 0600 file (nothing written when there are none)."""
    if not private:
        return
    path = _batch_options_path(home, batch_id)
    private_dir(secrets_dir(home) / BATCH_OPTIONS_DIR)
    write_private(path, json.dumps(dict(private)).encode())


def with_private_options(home: Path, batch_id: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The batch's options with its secret values back in place (memory only: never written to the store)."""
    out = dict(options)
    try:
        private = json.loads(_batch_options_path(home, batch_id).read_text(encoding="utf-8"))
    except (OSError, ValueError, InvalidInput):
        return out
    if isinstance(private.get("proxy"), str):
        out["proxy"] = private["proxy"]
    if isinstance(private.get("ytdlp_options"), dict):
        out["ytdlp_options"] = {**(out.get("ytdlp_options") or {}), **private["ytdlp_options"]}
    return out
