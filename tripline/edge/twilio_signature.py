"""X-Twilio-Signature on Twilio's form-encoded webhooks (status callbacks), as Twilio signs them.

The same computation as twilio-python's RequestValidator, so a callback Twilio signed passes
here exactly when it passes there: the full URL Twilio requested, then each parameter name in
sorted order followed by its value (a repeated name: each distinct value, sorted), HMAC-SHA1
keyed with the account's auth token, base64. Twilio's own signing is inconsistent about an
explicit default port, so the URL is tried as given, with the scheme's port added and with the
port removed. JSON bodies (bodySHA256 in the query) are not handled: our callbacks are forms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlparse


def expected(url: str, params: Mapping[str, str | list[str]], token: str) -> str:
    """The signature Twilio sends for a request to `url` with these form parameters."""
    signed = url
    for name in sorted(set(params)):
        value = params[name]
        values = [value] if isinstance(value, str) else value
        for one in sorted(set(values)):
            signed += name + one
    mac = hmac.new(token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def valid(url: str, params: Mapping[str, str | list[str]], signature: str, token: str) -> bool:
    """Whether `signature` is Twilio's for this request (any of the URL's port variants).

    An empty token or signature is never valid: an unconfigured token must not make every
    unsigned request pass. Compared in constant time, every variant, so the answer's timing
    says nothing about how much of a forged signature was right.
    """
    if not token or not signature:
        return False
    try:
        given = signature.encode("utf-8")
        matches = [
            hmac.compare_digest(expected(variant, params, token).encode("ascii"), given)
            for variant in url_variants(url)
        ]
    except UnicodeEncodeError:  # a lone surrogate: no request Twilio signed carries one
        return False
    return any(matches)


def url_variants(url: str) -> list[str]:
    """`url` as given, with the scheme's default port added, and with its port removed.

    As twilio-python: a URL without a port gains 443 (https) or 80 (any other scheme); a URL
    with one (any, not only the default) is also tried without it. Its host is cut at the last
    colon, not the first, so userinfo and IPv6 literals keep their shape. A URL whose port does
    not parse is tried only as given.
    """
    variants = [url]
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        return variants
    variants.append(parsed.geturl())  # twilio-python signs the re-assembled URL
    netloc = parsed.netloc
    if port is None:
        default = 443 if parsed.scheme == "https" else 80
        variants.append(parsed._replace(netloc=f"{netloc}:{default}").geturl())
    else:
        variants.append(parsed._replace(netloc=netloc[: netloc.rfind(":")]).geturl())
    return list(dict.fromkeys(variants))
