"""``send_events``: batches, gzip, event ids and retries, against a real server (issue 17).

The key property: a batch the server stored but whose answer was lost (503/429 from a
proxy, a dropped connection) is resent with the same event ids and stored once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import httpx
import pytest

from tests.client.faults import AsyncFaults, B, EventsServer, Faults, sent_lines
from tests.server import SECRET
from userportrait.client import (
    AsyncClient,
    Client,
    EventsNotSent,
    InvalidCredential,
    Retry,
    SendSummary,
    TransportError,
    _events,
)

FAST = Retry(backoff_s=0.001)
KEY = "upik_" + "k" * 43
USERS = 250


def events(n: int = 2500) -> list[dict[str, Any]]:
    """``n`` visits on 2024-06-10 by 250 users, iPhones in 广州."""
    return [{"openid": f"u{i % USERS}", "ts": f"2024-06-10T{8 + i // 500:02d}:{i % 60:02d}:00+08:00",
             "province": "广东", "city": "广州", "platform": "ios"} for i in range(n)]  # fmt: skip


def audience(users: int) -> dict[str, Any]:
    return {
        "province": [{"id": 44, "name": "广东省", "value": users}],
        "city": [{"id": 4401, "name": "广州", "value": users}],
        "genders": [{"id": 0, "name": "未知", "value": users}],
        "platforms": [{"id": 1, "name": "iPhone", "value": users}],
        "devices": [{"name": "未知", "value": users}],
        "ages": [{"id": 0, "name": "未知", "value": users}],
    }


PORTRAIT = {"ref_date": "20240610", "visit_uv_new": audience(USERS), "visit_uv": audience(USERS)}


def portrait_when_loaded(c: Client) -> Any:
    """The 06-10 portrait once the WAL was flushed (every 50 ms on this server)."""
    deadline = time.monotonic() + 20
    while True:
        body = c.native_portrait("20240610", "20240610")
        if body["visit_uv"]["province"] or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_batches_of_the_server_limit_gzipped(events_server: EventsServer) -> None:
    wire = Faults()
    with Client(events_server.url, B, SECRET, wire, ingest_key=events_server.key) as c:
        summary = c.send_events(events(), batch_size=1000)
        assert summary == SendSummary(accepted=2500, requests=3)
        assert portrait_when_loaded(c) == PORTRAIT
    assert [len(sent_lines(r)) for r in wire.attempts] == [1000, 1000, 500]
    assert {r.headers["content-encoding"] for r in wire.attempts} == {"gzip"}
    assert {r.headers["content-type"] for r in wire.attempts} == {"application/x-ndjson"}
    # the ingest key, never a read token (issue 24)
    assert {r.headers["authorization"] for r in wire.attempts} == {f"Bearer {events_server.key}"}
    assert all("access_token" not in r.url.params for r in wire.attempts)
    lines = [line for r in wire.attempts for line in sent_lines(r)]
    assert len({line["event_id"] for line in lines}) == 2500
    assert {line["appid"] for line in lines} == {B}
    assert events_server.stored() == 2500


def test_a_batch_over_the_server_limit_is_split(events_server: EventsServer) -> None:
    wire = Faults()
    with Client(events_server.url, B, SECRET, wire, ingest_key=events_server.key) as c:
        summary = c.send_events(events())  # 10,000 a batch; this server takes 1,000
    # 2500 -> 413; 1250 -> 413; 625, 625; 1250 -> 413; 625, 625
    assert [len(sent_lines(r)) for r in wire.attempts] == [2500, 1250, 625, 625, 1250, 625, 625]
    assert summary == SendSummary(accepted=2500, requests=7)
    assert events_server.stored() == 2500


@pytest.mark.parametrize("faults", [("ok", "503"), ("ok", "429", "408", "drop"), ("drop", "drop")])
def test_retry_after_the_server_stored_the_batch_counts_once(
    events_server: EventsServer, faults: tuple[str, ...]
) -> None:
    wire = Faults(*faults)
    with Client(events_server.url, B, SECRET, wire, ingest_key=events_server.key, retry=FAST) as c:
        summary = c.send_events(events(), batch_size=1000)
        assert portrait_when_loaded(c) == PORTRAIT
    spoiled = sum(f != "ok" for f in faults)
    assert summary == SendSummary(accepted=2500, requests=3 + spoiled, resent=1000 * spoiled)
    # the spoiled attempts and their retry carry the same body
    assert len({r.content for r in wire.attempts}) == 3
    assert events_server.stored() == 2500  # not 2500 + 1000 per spoiled attempt


def test_retry_after_is_honoured(events_server: EventsServer) -> None:
    waits: list[float] = []
    with Client(events_server.url, B, SECRET, Faults("429:7", "503:2"), retry=FAST,
                ingest_key=events_server.key,
                sleep=waits.append) as c:  # fmt: skip
        assert c.send_events(events(10)).accepted == 10
    assert len(waits) == 2 and 7 <= waits[0] < 7.01 and 2 <= waits[1] < 2.01


@pytest.mark.parametrize("attempt", [0, 1, 5, 12])
def test_back_off_is_full_jitter_and_honours_retry_after(attempt: int) -> None:
    policy = Retry()
    cap = min(30.0, 0.5 * 2**attempt)
    waits = [_events.wait_s(policy, attempt, None) for _ in range(200)]
    assert all(0 <= w <= cap for w in waits) and max(waits) > cap / 2
    assert all(3.0 <= _events.wait_s(policy, attempt, 3.0) <= max(3.0, cap)
               for _ in range(50))  # fmt: skip
    assert _events.wait_s(policy, attempt, 3600) <= max(120.0, cap)  # capped
    with pytest.raises(ValueError, match="at least 1"):
        Retry(attempts=0)


def test_rejected_events_keep_their_index_and_reason(events_server: EventsServer) -> None:
    sent = events(1500)
    sent[3] = {"ts": "2024-06-10T00:00:00Z"}
    sent[1200] = {"openid": "x", "ts": "yesterday"}
    sent[1201] = {"openid": "x", "ts": "2024-06-10T00:00:00Z", "appid": "wxb000000000000099"}
    with Client(events_server.url, B, ingest_key=events_server.key) as c:  # no secret: writes only
        summary = c.send_events(sent, batch_size=1000)
    assert summary.accepted == 1497 and summary.requests == 2
    assert [(r.index, r.reason) for r in summary.rejected] == [
        (3, "openid is missing"),
        (1200, "ts is not a timestamp: yesterday"),
        (1201, "appid does not match the ingest key's app"),
    ]
    assert summary.rejected[0].event["ts"] == "2024-06-10T00:00:00Z"


def test_fields_filled_once_and_datetimes_with_offsets() -> None:
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        seen.append(request)
        n = len(sent_lines(request))
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "accepted": n,
                                         "rejected": []})  # fmt: skip

    shanghai = dt.timezone(dt.timedelta(hours=8))
    given = [
        {"openid": "a", "ts": dt.datetime(2024, 6, 10, 9, 30, tzinfo=shanghai), "ip": "1.2.4.8",
         "model": "iPhone 13<iPhone14,5>", "user_agent": "Mozilla/5.0 MicroMessenger/8.0.47"},
        {"openid": "a", "ts": 1718000000, "event_id": "e1", "appid": B},
        {"openid": "a", "ts": 1718000000, "event_id": "e1"},  # the same event twice
    ]  # fmt: skip
    with Client("http://x", B, SECRET, httpx.MockTransport(server), ingest_key=KEY) as c:
        summary = c.send_events(given, gzip=False)
        with pytest.raises(ValueError, match="naive datetime"):
            c.send_events([{"openid": "a", "ts": dt.datetime(2024, 6, 10)}])
        with pytest.raises(TypeError, match="not JSON serializable"):
            c.send_events([{"openid": "a", "ts": 1718000000, "tags": {1, 2}}])
    assert summary == SendSummary(accepted=3, duplicates=1, requests=1)
    assert "content-encoding" not in seen[0].headers
    assert seen[0].headers["authorization"] == f"Bearer {KEY}" and not seen[0].url.params
    first, second, third = sent_lines(seen[0])
    assert len(first.pop("event_id")) == 32
    assert first == {"openid": "a", "ts": "2024-06-10T09:30:00+08:00", "ip": "1.2.4.8",
                     "model": "iPhone 13<iPhone14,5>",
                     "user_agent": "Mozilla/5.0 MicroMessenger/8.0.47", "appid": B}  # fmt: skip
    assert second == third == {"openid": "a", "ts": 1718000000, "event_id": "e1", "appid": B}
    assert "event_id" not in given[0]  # the caller's dicts are not changed


def test_sending_needs_the_ingest_key() -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))
    with Client("http://x", B, SECRET, transport) as c:
        with pytest.raises(ValueError, match="needs the app's ingest key.*apps ingest-key"):
            c.send_events(events(3))
    assert calls == []  # refused before anything went out, not with a token


def answering(*answers: httpx.Response) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return seen, httpx.MockTransport(server)


@pytest.mark.parametrize(
    ("answer", "cls"),
    [(httpx.Response(400, text="bad request"), TransportError),
     (httpx.Response(404, json={"errcode": -1, "errmsg": "no such API rid: a"}), Exception),
     (httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential rid: a"}),
      InvalidCredential)],
)  # fmt: skip
def test_other_4xx_and_error_bodies_are_not_retried(answer: httpx.Response, cls: type) -> None:
    seen, transport = answering(answer)
    with Client("http://x", B, SECRET, transport, ingest_key=KEY, retry=FAST) as c:
        with pytest.raises(EventsNotSent) as info:
            c.send_events(events(1500), batch_size=1000)
    # 40001 too: an ingest key is no token to refresh (a rotated key stays retired)
    assert len(seen) == 1 and isinstance(info.value.error, cls)
    assert info.value.summary == SendSummary(requests=1)
    assert len(info.value.unsent) == 1500  # this batch and the next, ids included
    assert all(len(e["event_id"]) == 32 for e in info.value.unsent)


def test_retries_give_up_with_the_unsent_events() -> None:
    ok = httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "accepted": 1000, "rejected": []})
    busy = httpx.Response(503, headers={"Retry-After": "0"}, json={"errcode": -1,
                          "errmsg": "system busy, retry later rid: a"})  # fmt: skip
    seen, transport = answering(ok, busy)
    with Client(
        "http://x", B, SECRET, transport, ingest_key=KEY, retry=Retry(attempts=3, backoff_s=0.001)
    ) as c:
        with pytest.raises(EventsNotSent) as info:
            c.send_events(events(2500), batch_size=1000)
    assert len(seen) == 4  # one ok, then three tries of the second batch
    err = info.value
    assert err.summary == SendSummary(accepted=1000, requests=4, resent=2000)
    assert [e["openid"] for e in err.unsent] == [f"u{i % USERS}" for i in range(1000, 2500)]
    assert str(err) == "events not sent: 1500 event(s): system busy, retry later rid: a"


def test_async_twin(events_server: EventsServer) -> None:
    wire = AsyncFaults("ok", "503", "drop")

    async def run() -> SendSummary:
        async with AsyncClient(events_server.url, B, SECRET, wire, retry=FAST,
                               ingest_key=events_server.key) as c:  # fmt: skip
            return await c.send_events(events(), batch_size=1000)

    assert asyncio.run(run()) == SendSummary(accepted=2500, requests=5, resent=2000)
    assert [len(sent_lines(r)) for r in wire.attempts] == [1000, 1000, 1000, 1000, 500]
    with Client(events_server.url, B, SECRET) as c:
        assert portrait_when_loaded(c) == PORTRAIT
    assert events_server.stored() == 2500
