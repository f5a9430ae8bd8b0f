"""Credentials never leave in what we record or print: `user:password@` in a URL becomes
`user:***@` in params, tags, output, reports and exports. The calls themselves use the URL as
given."""

from __future__ import annotations

import re
from typing import Any

# scheme://userinfo@host, whatever the scheme (http, postgresql+psycopg2, ...)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/@\s]+)@")


def _masked(match: re.Match[str]) -> str:
    user, sep, _ = match.group("info").partition(":")
    # user:password keeps the user; a userinfo without a password is a token: all of it goes.
    return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"


def mask(text: Any) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _USERINFO.sub(_masked, str(text))
