"""Security headers for the HTML pages: the public trace pages, the dashboard and its login.

Each page states what it may load in a ``Content-Security-Policy``, so an injected
script or style has nowhere to run, and may not be framed (clickjacking). The
policies are as strict as each page allows: the trace and login pages are plain
HTML with one inline ``<style>``, allowed by its hash; the dashboard's needs are
set where it is built (:mod:`dashboard.app`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping

#: Sent with every HTML page, whatever its policy.
_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Our URLs carry trace codes and dashboard paths: other sites need not see them.
    "Referrer-Policy": "same-origin",
}

_STYLE_ELEMENT = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def csp_hash(text: str) -> str:
    """The CSP source expression that allows exactly this inline script or style."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def inline_style_hashes(html: str) -> list[str]:
    """Hashes of the ``<style>`` elements of a page (without attributes) we rendered ourselves."""
    return [csp_hash(match) for match in _STYLE_ELEMENT.findall(html)]


def content_security_policy(directives: Mapping[str, Iterable[str]]) -> str:
    return "; ".join(" ".join((name, *sources)) for name, sources in directives.items())


def static_page_policy(html: str) -> str:
    """For a page of HTML and inline styles only: nothing else may load, run or frame it."""
    return content_security_policy(
        {
            "default-src": ["'none'"],
            "style-src": inline_style_hashes(html) or ["'none'"],
            "img-src": ["'self'"],
            "form-action": ["'self'"],
            "base-uri": ["'none'"],
            "frame-ancestors": ["'none'"],
        }
    )


def page_headers(policy: str) -> dict[str, str]:
    return {"Content-Security-Policy": policy, **_COMMON}
