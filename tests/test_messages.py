"""The outcome/reason vocabulary: complete, unambiguous, and the one the README documents."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tripline.messages import OUTCOME_REASONS, Outcome, Reason

README = Path(__file__).parent.parent / "README.md"


def test_every_reason_belongs_to_exactly_one_outcome() -> None:
    listed = Counter(r for reasons in OUTCOME_REASONS.values() for r in reasons)
    assert set(listed) == set(Reason)
    assert max(listed.values()) == 1
    assert set(OUTCOME_REASONS) == set(Outcome)
    assert OUTCOME_REASONS[Outcome.CALLED] == (Reason.NONE,)


def test_the_readme_table_lists_the_same_reasons_per_outcome() -> None:
    text = README.read_text()
    table = text[text.index("## Outcomes and reasons") :].split("\n## ", 1)[0]
    documented = {}
    for line in table.splitlines():
        row = re.match(r"\| `(\w+)`[^|]*\| (.*) \|$", line)
        if row:
            # The reasons are the back-quoted words before any explanation in parentheses.
            names = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", row.group(2)))
            documented[row.group(1)] = set(names)
    expected = {
        outcome.value: {r.value for r in reasons if r is not Reason.NONE}
        for outcome, reasons in OUTCOME_REASONS.items()
    }
    assert documented == expected
