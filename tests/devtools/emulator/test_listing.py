"""List Messages: newest first, Twilio's filters by number and UTC day, token paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.devtools.emulator.conftest import MESSAGES, OUR_NUMBER, PERSON, Emulator

MARCH_1 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)


def numbers(page: dict[str, Any]) -> list[int]:
    """Which seeded messages a page shows ("Seeded message 3 of 6" -> 3)."""
    return [int(m["body"].split()[2]) for m in page["messages"]]


async def list_page(emulator: Emulator, **params: str | int) -> dict[str, Any]:
    response = await emulator.client.get(MESSAGES, params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def follow(emulator: Emulator, uri: str) -> dict[str, Any]:
    response = await emulator.client.get(uri)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_pages_newest_first_with_twilios_envelope(emulator: Emulator) -> None:
    emulator.state.seed_conversation(
        OUR_NUMBER, PERSON, 5, start=MARCH_1, interval=timedelta(hours=1)
    )

    first = await list_page(emulator, PageSize=2)
    second = await follow(emulator, first["next_page_uri"])
    third = await follow(emulator, second["next_page_uri"])
    back = await follow(emulator, second["previous_page_uri"])

    assert [numbers(first), numbers(second), numbers(third)] == [[5, 4], [3, 2], [1]]
    assert numbers(back) == [5, 4]
    base = MESSAGES
    assert {k: v for k, v in first.items() if k not in ("messages", "next_page_uri")} == {
        "end": 1,
        "first_page_uri": f"{base}?PageSize=2&Page=0",
        "page": 0,
        "page_size": 2,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{base}?PageSize=2&Page=0",
    }
    assert first["next_page_uri"].startswith(f"{base}?PageSize=2&Page=1&PageToken=PA")
    assert (second["page"], second["start"], second["end"]) == (1, 2, 3)
    assert (third["start"], third["end"], third["next_page_uri"]) == (4, 4, None)


# Six texts, twelve hours apart: the person writes at 06:00, we answer at 18:00, on
# March 1, 2 and 3.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, [6, 5, 4, 3, 2, 1], id="no-filter"),
        pytest.param({"To": OUR_NUMBER}, [5, 3, 1], id="to"),
        pytest.param({"From": OUR_NUMBER}, [6, 4, 2], id="from"),
        pytest.param({"DateSent": "2024-03-02"}, [4, 3], id="on-day"),
        pytest.param({"DateSent<": "2024-03-02"}, [4, 3, 2, 1], id="on-or-before-day"),
        pytest.param({"DateSent>": "2024-03-02"}, [6, 5, 4, 3], id="on-or-after-day"),
        pytest.param(
            {"DateSent>": "2024-03-02T00:00:00Z"}, [6, 5, 4, 3], id="iso-datetime-as-its-day"
        ),
        pytest.param(
            {"DateSent<": "Sat, 02 Mar 2024 07:00:00 +0000"}, [4, 3, 2, 1], id="rfc2822-as-its-day"
        ),
        pytest.param({"DateSent<": "2024-02-29"}, [], id="before-everything"),
        pytest.param(
            {"To": OUR_NUMBER, "DateSent>": "2024-03-02", "DateSent<": "2024-03-02"},
            [3],
            id="combined",
        ),
    ],
)
async def test_filters(emulator: Emulator, params: dict[str, str], expected: list[int]) -> None:
    emulator.state.seed_conversation(
        OUR_NUMBER, PERSON, 6, start=MARCH_1, interval=timedelta(hours=12)
    )

    page = await list_page(emulator, **params)

    assert numbers(page) == expected


async def test_filters_ride_along_in_page_uris(emulator: Emulator) -> None:
    emulator.state.seed_conversation(
        OUR_NUMBER, PERSON, 6, start=MARCH_1, interval=timedelta(hours=12)
    )

    first = await list_page(emulator, To=OUR_NUMBER, **{"DateSent<": "2024-03-03"}, PageSize=1)
    second = await follow(emulator, first["next_page_uri"])

    assert first["uri"] == f"{MESSAGES}?To=%2B15005550006&DateSent%3C=2024-03-03&PageSize=1&Page=0"
    assert (numbers(first), numbers(second)) == ([5], [3])


async def test_paging_is_stable_when_texts_arrive_between_pages(emulator: Emulator) -> None:
    emulator.state.seed_conversation(
        OUR_NUMBER, PERSON, 4, start=MARCH_1, interval=timedelta(hours=1)
    )

    first = await list_page(emulator, PageSize=2)
    for _ in range(3):
        assert (await emulator.send(Body="newer than all")).status_code == 201
    await emulator.state.settle()
    second = await follow(emulator, first["next_page_uri"])

    assert (numbers(first), numbers(second)) == ([4, 3], [2, 1])
    assert second["next_page_uri"] is None


async def test_page_without_token_is_an_offset(emulator: Emulator) -> None:
    emulator.state.seed_conversation(
        OUR_NUMBER, PERSON, 5, start=MARCH_1, interval=timedelta(hours=1)
    )

    page = await list_page(emulator, PageSize=2, Page=1)

    assert numbers(page) == [3, 2]


async def test_default_page_size_is_50_and_the_largest_1000(emulator: Emulator) -> None:
    emulator.state.seed_conversation(OUR_NUMBER, PERSON, 60, start=MARCH_1)

    default = await list_page(emulator)
    largest = await list_page(emulator, PageSize=5000)

    assert (len(default["messages"]), default["page_size"]) == (50, 50)
    assert default["next_page_uri"] is not None
    assert (len(largest["messages"]), largest["page_size"], largest["next_page_uri"]) == (
        60,
        1000,
        None,
    )


async def test_seeded_history_spreads_over_days(emulator: Emulator) -> None:
    seeded = emulator.state.seed_conversation(OUR_NUMBER, PERSON, 10_000)

    days = {m.date_created.date() for m in seeded}
    directions = [m.direction for m in seeded[:4]]
    assert len(days) >= 3
    assert directions == ["inbound", "outbound-api", "inbound", "outbound-api"]
    assert seeded[-1].date_created <= emulator.state.clock()


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"PageSize": "0"}, id="page-size-zero"),
        pytest.param({"PageSize": "many"}, id="page-size-not-number"),
        pytest.param({"Page": "-1"}, id="negative-page"),
        pytest.param({"PageToken": "PAnot-a-token"}, id="bad-token"),
        pytest.param({"DateSent": "yesterday"}, id="bad-date"),
    ],
)
async def test_bad_list_parameters_are_20001(emulator: Emulator, params: dict[str, str]) -> None:
    response = await emulator.client.get(MESSAGES, params=params)

    assert (response.status_code, response.json()["code"]) == (400, 20001)
