"""docs/configuration.md is the schema's own reference, regenerated."""

from __future__ import annotations

from pathlib import Path

from tripline.conf.reference import render

DOC = Path(__file__).parent.parent.parent / "docs" / "configuration.md"


def test_the_committed_reference_matches_the_schema() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: python -m tripline.conf.reference > docs/configuration.md"
    )


def test_every_section_and_secret_is_in_it() -> None:
    text = render()
    for section in ("[mqtt]", "[sensor]", "[dialer]", "[fleet]", "[http]"):
        assert f"## {section}" in text
    assert "`TRIPLINE__HTTP__WEBHOOK_HMAC_SECRET` " in text
    assert text.count("(secret: environment only)") >= 8
