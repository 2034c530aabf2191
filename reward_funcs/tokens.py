"""Only the trainer may score: the token a reward service bound off loopback requires in its URLs
(`?token=...`; OpenRLHF's client sends no headers), where it comes from, and its file."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
from pathlib import Path

from reward_funcs import cli

TOKEN_FILE = Path("~/.cache/reward_funcs/token")
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]{16,}")  # as is in a URL


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is this machine's loopback ("" and 0.0.0.0 are every interface)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def _read_or_create_token(path: Path) -> str:
    """The token in `path`; a file that does not exist is created with a fresh token, readable by its owner only
    (written aside, then linked into place: two services starting at once read the same token)."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    if path.stat().st_mode & 0o077:
        raise cli.UsageError(f"the token file {path} can be read by other users: chmod 600 {path}")
    return path.read_text().strip()


def resolve_token(
    host: str, token_file: Path | None, environ=os.environ, default_file: Path = TOKEN_FILE
) -> tuple[str | None, str]:
    """The token the service requires and where it comes from (for the printed line): --token-file, else
    $REWARD_TOKEN, else, on any address but loopback, the default file; no token on loopback without either."""
    if token_file is None and environ.get("REWARD_TOKEN"):
        token, where = environ["REWARD_TOKEN"].strip(), "$REWARD_TOKEN"
    elif token_file is None and is_loopback(host):
        return None, ""
    else:
        path = (token_file or default_file).expanduser()
        try:
            token, where = _read_or_create_token(path), str(path)
        except OSError as e:
            raise cli.UsageError(f"cannot read or create the token file {path}: {e.strerror}") from None
    if not TOKEN_CHARACTERS.fullmatch(token):
        fix = "set another" if where == "$REWARD_TOKEN" else "remove the file to have a fresh one made"
        raise cli.UsageError(
            f"the token in {where} must be 16 or more of A-Z a-z 0-9 - _ . ~ (it goes into a URL as it is): {fix}"
        )
    return token, where


# A run's command carries the placeholder, never the token: the job's shell expands it from the job's environment.
TOKEN_ENV = "REWARD_TOKEN"
URL_PLACEHOLDER = "${REWARD_TOKEN}"
_TOKEN_IN_URL = re.compile(r"([?&]token=)(\$\{REWARD_TOKEN\}|[^&#\s'\",;)\]}]*)")  # up to where a URL ends


def token_out_of_url(url: str) -> tuple[str, str | None]:
    """`url` with its ?token=... value replaced by URL_PLACEHOLDER, and the token it held (None: it held none, or
    the placeholder already)."""
    found = [value for _, value in _TOKEN_IN_URL.findall(url) if value != URL_PLACEHOLDER]
    if len(set(found)) > 1:
        raise cli.UsageError(f"a reward URL holds two different tokens: give {mask_token(url)} one ?token=")
    return _TOKEN_IN_URL.sub(lambda m: m.group(1) + URL_PLACEHOLDER, url), (found[0] if found else None)


def mask_token(url: str) -> str:
    """`url` as it may be printed: a token's value shown as ***."""
    return _TOKEN_IN_URL.sub(lambda m: m.group(1) + ("***" if m.group(2) != URL_PLACEHOLDER else m.group(2)), url)


def token_into_url(url: str, token: str | None) -> str:
    """`url` as a client here calls it: the placeholder replaced by `token`."""
    return url.replace(URL_PLACEHOLDER, token) if token else url


def check_token(token: str, where: str) -> None:
    if not TOKEN_CHARACTERS.fullmatch(token):
        raise cli.UsageError(f"the token in {where} must be 16 or more of A-Z a-z 0-9 - _ . ~ (it goes into a URL)")
