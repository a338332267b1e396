"""CXone script parameters: no value can shift another, and the Studio script gets each back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.adapters.backends.studio import escape, join, split, unescape

# Text rich in what matters here: the separator, the escape character and escape look-alikes.
_TRICKY = st.text(alphabet=st.sampled_from("|%7C25c|%a "), max_size=12)
_ANY = st.text(max_size=40)
_FIELD = st.one_of(_TRICKY, _ANY)


@given(st.lists(_FIELD, min_size=1, max_size=6))
def test_what_the_script_reads_is_what_was_sent(values: list[str]) -> None:
    # CXone splits at every `|`: one pN per value, whatever the values hold.
    assert join(values).count("|") == len(values) - 1
    assert split(join(values)) == values


@given(_FIELD)
def test_an_escaped_value_holds_no_separator_and_unescapes_to_itself(value: str) -> None:
    assert "|" not in escape(value)
    assert unescape(escape(value)) == value


@given(st.text(alphabet=st.characters(exclude_characters="%|"), max_size=40))
def test_a_value_without_percent_or_pipe_is_sent_as_it_is(value: str) -> None:
    # A script that does not unescape still reads every ordinary id.
    assert escape(value) == value


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        pytest.param("S|1", "S%7C1", id="pipe-becomes-%7C"),
        pytest.param("S%1", "S%251", id="percent-becomes-%25"),
        pytest.param("S%7C", "S%257C", id="an-escape-look-alike-is-escaped-too"),
        pytest.param("||", "%7C%7C", id="pipes-only"),
        pytest.param("", "", id="empty"),
    ],
)
def test_escapes(value: str, sent: str) -> None:
    assert escape(value) == sent
    assert unescape(sent) == value


def test_unescaping_in_the_other_order_would_be_wrong() -> None:
    # Why the Studio snippet must replace %7C before %25: "%7C" is sent as "%257C".
    sent = escape("%7C")
    assert sent.replace("%25", "%").replace("%7C", "|") == "|"  # the wrong order
    assert unescape(sent) == "%7C"


def test_a_pipe_in_the_sensor_id_shifts_nothing() -> None:
    values = ["+14155550100", "S|x|y", "temp_critical", "ref-1"]
    sent = join(values)
    assert sent == "+14155550100|S%7Cx%7Cy|temp_critical|ref-1"
    assert sent.split("|")[2] == "temp_critical"  # p3 is still the alert type
    assert split(sent) == values
