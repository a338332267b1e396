"""X-Twilio-Signature: twilio-python's own vectors, the port variants, and tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.edge.twilio_signature import expected, url_variants, valid

# twilio-python tests/unit/test_request_validator.py (ValidationTest.setUp).
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS: dict[str, str | list[str]] = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_the_known_vector_by_hand() -> None:
    # What the signature is made of, spelled out, so the vector is checked and not only quoted.
    signed = (
        URL
        + "CallSidCA1234567890ABCDE"
        + "Caller+14158675309"
        + "Digits1234"
        + "From+14158675309"
        + "To+18005551212"
    )
    digest = hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == SIGNATURE


def test_the_known_vector() -> None:
    assert expected(URL, PARAMS, TOKEN) == SIGNATURE
    assert valid(URL, PARAMS, SIGNATURE, TOKEN)


def test_parameter_order_does_not_matter() -> None:
    assert expected(URL, dict(reversed(PARAMS.items())), TOKEN) == SIGNATURE


@pytest.mark.parametrize(
    "digits",
    [
        pytest.param(["5678", "1234", "1234"], id="sorted-and-deduplicated"),
        pytest.param(["1234", "5678"], id="already-sorted"),
    ],
)
def test_repeated_names_sign_each_distinct_value_sorted(digits: list[str]) -> None:
    # twilio-python test_compute_signature_duplicate_multi_dict / _query_dict.
    params: dict[str, str | list[str]] = {"Sid": "CA123", "SidAccount": "AC123", "Digits": digits}
    assert expected(URL, params, TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # twilio-python's port tests: each signature was made over the other form of the URL.
        pytest.param(URL.replace(".com", ".com:1234"), SIGNATURE, id="removes-port-https"),
        pytest.param(
            URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            id="removes-port-http",
        ),
        pytest.param(URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", id="adds-443"),
        pytest.param(URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4=", id="adds-80"),
        pytest.param(URL.replace(".com", ".com:443"), SIGNATURE, id="drops-explicit-443"),
    ],
)
def test_port_variants(url: str, signature: str) -> None:
    assert valid(url, PARAMS, signature, TOKEN)


def test_the_port_variant_signatures_are_what_they_claim() -> None:
    assert expected("https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, TOKEN) == (
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    )
    assert expected("http://mycompany.com:80/myapp.php?foo=1&bar=2", PARAMS, TOKEN) == (
        "0ZXoZLH/DfblKGATFgpif+LLRf4="
    )


@pytest.mark.parametrize(
    ("url", "variants"),
    [
        pytest.param("https://h/p?q=1", ["https://h/p?q=1", "https://h:443/p?q=1"], id="https"),
        pytest.param("http://h/p", ["http://h/p", "http://h:80/p"], id="http"),
        pytest.param(
            "https://h:8443/p", ["https://h:8443/p", "https://h/p"], id="any-port-removed"
        ),
        pytest.param(
            "https://u:pw@h:8443/p", ["https://u:pw@h:8443/p", "https://u:pw@h/p"], id="userinfo"
        ),
        pytest.param("http://[::1]:8080/p", ["http://[::1]:8080/p", "http://[::1]/p"], id="ipv6"),
        pytest.param("http://[::1]/p", ["http://[::1]/p", "http://[::1]:80/p"], id="ipv6-bare"),
        pytest.param("https://h:99999/p", ["https://h:99999/p"], id="bad-port-as-given-only"),
        pytest.param(
            "https://h/p?", ["https://h/p?", "https://h/p", "https://h:443/p"], id="reassembled"
        ),
    ],
)
def test_url_variants(url: str, variants: list[str]) -> None:
    assert url_variants(url) == variants


@pytest.mark.parametrize(
    ("url", "params", "signature", "token"),
    [
        pytest.param(URL, {**PARAMS, "Digits": "1235"}, SIGNATURE, TOKEN, id="value-changed"),
        pytest.param(URL, {**PARAMS, "Extra": "x"}, SIGNATURE, TOKEN, id="param-added"),
        pytest.param(
            URL,
            {k: v for k, v in PARAMS.items() if k != "To"},
            SIGNATURE,
            TOKEN,
            id="param-dropped",
        ),
        pytest.param(
            URL, {**PARAMS, "Digits": ["1234", "9"]}, SIGNATURE, TOKEN, id="value-repeated"
        ),
        pytest.param(URL + "&baz=3", PARAMS, SIGNATURE, TOKEN, id="url-query-changed"),
        pytest.param(URL.replace("https", "http"), PARAMS, SIGNATURE, TOKEN, id="scheme-changed"),
        pytest.param(
            URL.replace(".com", ".com:8443").replace("https", "http"),
            PARAMS,
            SIGNATURE,
            TOKEN,
            id="other-port-other-scheme",
        ),
        pytest.param(URL, PARAMS, SIGNATURE, "12346", id="token-changed"),
        pytest.param(URL, PARAMS, SIGNATURE.lower(), TOKEN, id="signature-case"),
        pytest.param(URL, PARAMS, SIGNATURE + " ", TOKEN, id="signature-padded"),
        pytest.param(URL, PARAMS, "", TOKEN, id="empty-signature"),
        pytest.param(URL, PARAMS, expected(URL, PARAMS, ""), "", id="empty-token"),
        pytest.param(URL, PARAMS, "sé", TOKEN, id="non-ascii-signature"),
        pytest.param(URL, {"A": "\ud800"}, SIGNATURE, TOKEN, id="lone-surrogate"),
    ],
)
def test_tampered_is_invalid(
    url: str, params: dict[str, str | list[str]], signature: str, token: str
) -> None:
    assert not valid(url, params, signature, token)


_NAME = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8
)
_VALUE = st.text(max_size=12)
_PARAMS = st.dictionaries(_NAME, _VALUE | st.lists(_VALUE, min_size=1, max_size=3), max_size=6)
_URL = st.builds(
    "{}://{}{}/{}".format,
    st.sampled_from(["https", "http"]),
    st.sampled_from(["example.com", "hooks.example.org"]),
    st.sampled_from(["", ":443", ":80", ":8080"]),
    st.text(alphabet="abc/?=&%", max_size=10),
)
_TOKEN = st.text(min_size=1, max_size=32)


@given(_URL, _PARAMS, _TOKEN)
def test_round_trip(url: str, params: dict[str, str | list[str]], token: str) -> None:
    assert valid(url, params, expected(url, params, token), token)


@given(_URL, _PARAMS, _TOKEN, _NAME, _VALUE)
def test_any_added_parameter_breaks_it(
    url: str, params: dict[str, str | list[str]], token: str, name: str, value: str
) -> None:
    signature = expected(url, params, token)
    changed = dict(params)
    old = changed.get(name)
    olds = [] if old is None else [old] if isinstance(old, str) else old
    if value in olds:
        return  # the same value again is deduplicated: not a change
    changed[name] = [*olds, value] if olds else value
    assert not valid(url, changed, signature, token)


@given(_URL, _PARAMS, _TOKEN, _TOKEN)
def test_another_token_breaks_it(
    url: str, params: dict[str, str | list[str]], token: str, other: str
) -> None:
    if other != token:
        assert not valid(url, params, expected(url, params, token), other)
