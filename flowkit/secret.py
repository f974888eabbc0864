"""The per-user key that authenticates pickled outputs (HMAC-SHA256).

A pickle runs code when it is loaded, and the content hash next to it sits in the same writable
state folder, so a hash proves nothing against someone who can write there. A pickled output is
therefore signed with a key kept *outside* the state folder, and only unpickled when the
signature matches.

The key comes from ``$FLOWKIT_SECRET`` when set (CI: give every job that shares a state folder the
same secret), else from ``$XDG_CONFIG_HOME/flowkit/secret`` (``~/.config/flowkit/secret``), which is
created on first use: 32 random bytes, hex, mode 0600, written to a temporary file and linked into
place so that two processes starting at once agree on one key. When that file cannot be created
(a read-only home), a key for this process only is used and a warning says that pickled outputs
of this run will not be restorable by a later one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

__all__ = ["ENV", "key_path", "secret_key", "sign"]

ENV = "FLOWKIT_SECRET"

log = logging.getLogger("flowkit")

_cache: dict[tuple[str | None, str], bytes] = {}


def key_path() -> Path:
    """Where the user's key file lives (whether or not it exists yet)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "flowkit" / "secret"


def secret_key() -> bytes:
    """The key that signs pickled outputs: ``$FLOWKIT_SECRET``, else the user's key file."""
    env = os.environ.get(ENV) or None
    path = key_path()
    cached = _cache.get((env, str(path)))
    if cached is not None:
        return cached
    if env is not None:
        key = hashlib.sha256(env.encode()).digest()
    else:
        try:
            key = _read_or_create(path)
        except OSError as exc:
            log.warning(
                "cannot create the key that signs pickled outputs (%s: %s); using a key for "
                "this process only, so later runs will re-run steps with pickled outputs. Set "
                "%s, or make %s writable.",
                path,
                exc.strerror or exc,
                ENV,
                path.parent,
            )
            key = secrets.token_bytes(32)
    _cache[(env, str(path))] = key
    return key


def sign(name: str, blob: bytes) -> str:
    """The signature of a side file: HMAC-SHA256 over its name and content, hex (128 bits)."""
    mac = hmac.new(secret_key(), name.encode() + b"\x00" + blob, hashlib.sha256)
    return mac.hexdigest()[:32]


def _read_or_create(path: Path) -> bytes:
    text = _read(path)
    if text is None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        text = _read(path)
        if text is None:
            raise OSError(f"{path} is empty")
    return hashlib.sha256(text.encode()).digest()


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not text:
        raise OSError(f"{path} is empty: delete it, and a new key is made")
    if mode & 0o077:
        log.warning(
            "the key that signs pickled outputs, %s, can be read by other users (mode %s): "
            "anyone who reads it can make flowkit unpickle a file of their choosing. "
            "Run: chmod 600 %s",
            path,
            oct(mode & 0o777),
            path,
        )
    return text
