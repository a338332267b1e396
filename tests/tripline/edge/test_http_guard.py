"""The browser guards as tables: which requests are cross-site, and the pages' policies."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.edge import agent_view
from tripline.edge.http_guard import (
    STRICT,
    cross_site,
    inline_block,
    page_policy,
    source_hash,
    strict_policy,
)

HOST = "gw1.example.com:8080"
ALLOWED = ["https://ops.example.com"]


@pytest.mark.parametrize(
    ("origins", "sites", "refused"),
    [
        pytest.param([], [], False, id="no-browser-headers-pass-curl-devices-simulator"),
        pytest.param(["http://gw1.example.com:8080"], ["same-origin"], False, id="same-origin"),
        pytest.param(["https://gw1.example.com:8080"], [], False, id="same-host-behind-tls"),
        pytest.param(["HTTP://GW1.EXAMPLE.COM:8080"], [], False, id="origin-in-any-case"),
        pytest.param(["https://ops.example.com"], ["same-site"], False, id="allowed-origin"),
        pytest.param([], ["none"], False, id="typed-in-the-address-bar"),
        pytest.param([], ["cross-site"], True, id="sec-fetch-site-cross-site"),
        pytest.param([], [" Cross-Site "], True, id="sec-fetch-site-any-case"),
        pytest.param(["https://evil.example"], [], True, id="foreign-origin"),
        pytest.param(["null"], [], True, id="opaque-origin"),
        pytest.param(["http://gw1.example.com"], [], True, id="same-host-other-port"),
        pytest.param(["http://gw1.example.com:8080.evil.example"], [], True, id="host-as-prefix"),
        pytest.param(["https://ops.example.com/"], [], True, id="allowed-with-a-path-is-not"),
        pytest.param(["ftp://gw1.example.com:8080"], [], True, id="other-scheme"),
        pytest.param(["gw1.example.com:8080"], [], True, id="no-scheme"),
        pytest.param(
            ["http://gw1.example.com:8080", "https://evil.example"], [], True, id="repeated-origin"
        ),
        pytest.param(["http://gw1.example.com:8080"], ["cross-site"], True, id="either-says-so"),
        pytest.param(["https://\udcff"], [], True, id="undecodable-bytes"),
    ],
)
def test_cross_site(origins: list[str], sites: list[str], refused: bool) -> None:
    why = cross_site(origins, sites, HOST, ALLOWED)
    assert (why is not None) is refused
    if why is not None:
        assert why.isascii()


@given(st.lists(st.text(max_size=60), max_size=3), st.lists(st.text(max_size=20), max_size=2))
def test_any_header_value_gets_an_answer_not_an_exception(
    origins: list[str], sites: list[str]
) -> None:
    cross_site(origins, sites, HOST, ALLOWED)


def test_a_page_is_allowed_its_own_inline_blocks_only() -> None:
    page = "<style>b { color: red }</style><p>x</p><script>go()</script>"
    style, script = inline_block(page, "style"), inline_block(page, "script")
    assert (style, script) == ("b { color: red }", "go()")
    digest = base64.b64encode(hashlib.sha256(b"go()").digest()).decode()
    assert source_hash(script) == f"'sha256-{digest}'"
    policy = page_policy(style=style, script=script)
    assert policy == (
        f"default-src 'none'; style-src {source_hash(style)}; "
        f"script-src {source_hash(script)}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert "unsafe" not in policy


@pytest.mark.parametrize(
    ("ancestors", "directive"),
    [
        pytest.param([], None, id="empty-any-page-may-frame"),
        pytest.param(["'none'"], "frame-ancestors 'none'", id="none"),
        pytest.param(
            ["https://desk.example.com", "https://*.mypurecloud.com"],
            "frame-ancestors https://desk.example.com https://*.mypurecloud.com",
            id="desktops",
        ),
    ],
)
def test_the_agent_page_policy(ancestors: list[str], directive: str | None) -> None:
    policy = page_policy(style=agent_view.STYLE, frame_ancestors=ancestors)
    assert "script-src" not in policy
    assert f"style-src {source_hash(agent_view.STYLE)}" in policy
    framing = [d.strip() for d in policy.split(";") if "frame-ancestors" in d]
    assert framing == ([directive] if directive else [])
    strict = strict_policy(ancestors)
    assert strict.startswith("default-src 'none'")
    assert [d.strip() for d in strict.split(";") if "frame-ancestors" in d] == framing


def test_the_strict_policy_loads_nothing_and_frames_nowhere() -> None:
    assert strict_policy(["'none'"]) == STRICT
    assert "default-src 'none'" in STRICT


def test_the_agent_page_has_exactly_the_hashed_style() -> None:
    page = agent_view.render(
        reference_id="ref-1",
        alert={"sensorId": "<style>x</style>", "alertType": "</style><script>"},
        record=None,
        grouped=[],
        readings=[],
        customer=None,
        now=0.0,
    )
    assert inline_block(page, "style") == agent_view.STYLE
    assert "<script" not in page


@pytest.mark.parametrize("count", [0, 2])
def test_a_page_with_other_than_one_block_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="expected one inline <script>"):
        inline_block("<script>a()</script>" * count, "script")
