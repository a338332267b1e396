"""The contact centers' configured objects that `check-config --probe` reads by id (data).

Genesys queues, worktypes and contact lists in the Platform API's shapes (`Queue`, `Worktype`,
`ContactList` in the SDK's build/docs, MyPureCloud/platform-client-sdk-python 257.1.0) and CXone
skills, cut to the fields that identify them; an id the org does not have is a 404 with the
emulator's error body. It knows the demo ids of conf/default.toml (a test may add, change or
remove some: `Emulator.objects`).
"""

from __future__ import annotations

from typing import Any

QUEUE_ID = "4d6d1e3c-7c5f-4a39-9b43-000000000001"
WORKTYPE_ID = "6f8f3a5e-9e71-4c5b-9d65-000000000003"
WORKBIN_ID = "7a9a4b6f-af82-4d6c-ae76-000000000004"
CONTACT_LIST_ID = "8b0b5c7a-b093-4e7d-bf87-000000000005"
SKILL_ID = "2002"
"""The demo CXone skill."""

_DIVISION = {"id": "d0000000-0000-4000-8000-000000000000", "name": "Home"}


def demo_objects() -> dict[str, dict[str, dict[str, Any]]]:
    """The demo org's objects by kind, then id."""
    return {
        "queues": {
            QUEUE_ID: {
                "id": QUEUE_ID,
                "name": "Proactive alerts",
                "division": _DIVISION,
                "memberCount": 10,
                "userMemberCount": 10,
                "joinedMemberCount": 10,
                "skillEvaluationMethod": "ALL",
                "selfUri": f"/api/v2/routing/queues/{QUEUE_ID}",
            }
        },
        "worktypes": {
            WORKTYPE_ID: {
                "id": WORKTYPE_ID,
                "name": "Deferred sensor alert",
                "division": _DIVISION,
                "defaultWorkbin": {"id": WORKBIN_ID},
                "selfUri": f"/api/v2/taskmanagement/worktypes/{WORKTYPE_ID}",
            }
        },
        "contactlists": {
            CONTACT_LIST_ID: {
                "id": CONTACT_LIST_ID,
                "name": "Sensor alerts",
                "version": 1,
                "division": _DIVISION,
                "columnNames": [
                    "phone",
                    "name",
                    "sensorId",
                    "alertType",
                    "referenceId",
                    "telemetryHash",
                ],
                "phoneColumns": [{"columnName": "phone", "type": "cell"}],
                "automaticTimeZoneMapping": False,
                "selfUri": f"/api/v2/outbound/contactlists/{CONTACT_LIST_ID}",
            }
        },
        "skills": {
            SKILL_ID: {
                "skillId": int(SKILL_ID),
                "skillName": "Proactive alerts (outbound)",
                "mediaTypeId": 4,
                "mediaTypeName": "Phone Call",
                "isActive": True,
                "isOutbound": True,
                "outboundStrategy": "Personal Connection",
            }
        },
    }
