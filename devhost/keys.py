"""Function keys for FUNCTION/ADMIN routes, as the host's ``code=`` / ``x-functions-key`` check.

Keys come from the ``DEVHOST_FUNCTION_KEYS`` setting (comma-separated; environment or
``local.settings.json`` Values). When it is unset, devhost generates one key per state folder,
stores it in ``<state>/function_key`` and prints it at start-up, so it stays stable across runs.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from devhost.files import write_text_atomically

KEYS_SETTING = "DEVHOST_FUNCTION_KEYS"
KEY_FILE = "function_key"


def load_or_create_keys(state_dir: Path, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The accepted keys, and where they came from (for the start-up banner)."""
    source = os.environ if env is None else env
    configured = [k.strip() for k in source.get(KEYS_SETTING, "").split(",") if k.strip()]
    if configured:
        return configured, f"from the {KEYS_SETTING} setting"
    path = state_dir / KEY_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return [stored], f"stored in {path}"
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    write_text_atomically(path, key + "\n", mode=0o600)
    return [key], f"generated, stored in {path}"


def key_matches(candidate: str | None, keys: list[str]) -> bool:
    """Constant-time comparison against every accepted key."""
    if not candidate:
        return False
    # surrogateescape: a header's non-UTF-8 bytes arrive as lone surrogates, which plain encode() refuses.
    given = candidate.encode("utf-8", "surrogateescape")
    return any(hmac.compare_digest(given, key.encode("utf-8", "surrogateescape")) for key in keys)
