"""ValidatorClient against real servers: `python -m validator`, and scripted local HTTP servers.

The scripted server is a real ThreadingHTTPServer on a free port whose answers are queued
by the test (503, slow, garbage, ...); after the queue it answers like the validator.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.io.validator_client import (
    MAX_MESSAGE_CHARS,
    ValidationResult,
    ValidatorClient,
    ValidatorProtocolError,
    ValidatorRejected,
    ValidatorUnavailable,
    build_validation_request,
)
from pipeline.records import Account, AttributedTransaction, Transaction
from validator.process import ValidatorProcess, free_port

API_KEY = "client-test-key"


def payload(tx_id, amount: float = 12.5, **extra) -> dict:
    return {
        "transaction_id": tx_id,
        "sender_bank_account": "S1",
        "receiver_details": {"name": "Bo", "bank": "Bank B", "bank_account": "R1"},
        "sender_bank": "Bank A",
        "amount": amount,
        **extra,
    }


def ok_body(transactions: list[dict]) -> dict:
    return {
        "results": [
            {
                "is_fraudulent_transaction": False,
                "score": 0.0,
                "reasons": [],
                "transaction_id": t["transaction_id"],
            }
            for t in transactions
        ]
    }


class ScriptedServer:
    """A real HTTP server; each POST takes the next scripted answer, then answers OK.

    A script item is ``(status, body)`` (body: dict -> JSON, str -> text, callable(transactions)
    -> dict) or ``("sleep", seconds)`` to answer OK late.
    """

    def __init__(self, script=()):
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real server

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(
                        {
                            "peer": self.client_address,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    step = outer.script.pop(0) if outer.script else (200, ok_body)
                status, answer = step
                if status == "sleep":
                    time.sleep(answer)
                    status, answer = 200, ok_body
                if callable(answer):
                    answer = answer(body["transactions"])
                data = (
                    answer if isinstance(answer, str) else json.dumps(answer)
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(*script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def validator_server():
    with ValidatorProcess(
        api_key=API_KEY, extra_args=["--max-batch-size", "20"]
    ) as server:
        yield server


def make_client(url, **kwargs) -> ValidatorClient:
    kwargs.setdefault("timeout_s", 2.0)
    return ValidatorClient(url, **kwargs)


# -- against the real validator --------------------------------------------------------------
def test_happy_path_in_order(validator_server):
    with make_client(validator_server.url, api_key=API_KEY) as client:
        results = client.validate_batch(
            [
                payload("a"),
                payload("b", amount=90_000, sender_bank="Offshore Trust Ltd"),
                payload(3),
            ]
        )
    assert [r.transaction_id for r in results] == ["a", "b", 3]
    assert results[0] == ValidationResult("a", False, 0.0, ())
    assert results[1].is_fraudulent and "watched_sender_bank" in results[1].reasons


def test_empty_batch_makes_no_call(scripted):
    server = scripted()
    assert make_client(server.url).validate_batch([]) == []
    assert server.requests == []


def test_large_batches_are_chunked(validator_server):
    client = make_client(validator_server.url, api_key=API_KEY, max_batch_size=20)
    results = client.validate_batch([payload(i) for i in range(45)])
    assert [r.transaction_id for r in results] == list(range(45))


def test_wrong_key_is_rejected_not_unavailable(validator_server):
    client = make_client(validator_server.url, api_key="wrong")
    with pytest.raises(
        ValidatorRejected, match=r"HTTP 401: missing or invalid X-API-Key header"
    ) as error:
        client.validate_batch([payload("a")])
    assert error.value.status_code == 401 and error.value.rejects_the_caller
    assert not isinstance(error.value, ValidatorUnavailable)  # not retried by the caller


def test_invalid_payload_is_rejected_naming_the_field(validator_server):
    client = make_client(validator_server.url, api_key=API_KEY)
    with pytest.raises(ValidatorRejected) as error:
        client.validate_batch([payload("a"), payload("b", currency="EURO")])
    assert error.value.status_code == 422 and not error.value.rejects_the_caller
    assert error.value.message.startswith("invalid request: transactions[1].currency")


def test_batch_over_server_limit_is_rejected(validator_server):
    client = make_client(validator_server.url, api_key=API_KEY, max_batch_size=1000)
    with pytest.raises(ValidatorRejected, match="413"):
        client.validate_batch([payload(i) for i in range(21)])


def test_long_messages_are_cut(scripted):
    server = scripted((400, {"message": "m" * 1000}))
    with pytest.raises(ValidatorRejected) as error:
        make_client(server.url).validate_batch([payload("x")])
    assert error.value.message == "m" * MAX_MESSAGE_CHARS


# -- one attempt per call: the caller owns the retries ----------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_busy_or_failing_server_is_unavailable_after_one_attempt(scripted, status):
    server = scripted((status, {"message": "busy"}))
    client = make_client(server.url, api_key="k")
    with pytest.raises(ValidatorUnavailable, match=f"answered HTTP {status}") as error:
        client.validate_batch([payload("x")])
    assert not isinstance(error.value, ValidatorRejected)
    assert len(server.requests) == 1
    assert server.requests[0]["headers"]["X-API-Key"] == "k"
    assert [r.transaction_id for r in client.validate_batch([payload("y")])] == ["y"]


def test_connection_refused_is_unavailable():
    client = make_client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValidatorUnavailable, match="did not answer: ConnectionError"):
        client.validate_batch([payload("x")])


def test_timeout_against_a_slow_server_is_one_attempt(scripted):
    server = scripted(("sleep", 3.0))
    client = ValidatorClient(server.url, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ValidatorUnavailable, match="Timeout"):
        client.validate_batch([payload("x")])
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1


def test_server_back_after_being_down():
    server = ValidatorProcess(api_key=API_KEY)
    client = make_client(server.url, api_key=API_KEY)
    with pytest.raises(ValidatorUnavailable):
        client.validate_batch([payload("late")])
    with server:
        assert client.validate_batch([payload("late")])[0].transaction_id == "late"


# -- against scripted servers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ("<html>Bad gateway</html>", "not a results object"),
        ({"verdicts": []}, "not a results object"),
        ([1, 2], "not a results object"),
        ({"results": "yes"}, "got str"),
        (
            lambda txs: {"results": ok_body(txs)["results"][:-1]},
            "asked for 2 validations, got 1",
        ),
        (
            lambda txs: {"results": ok_body(txs)["results"] * 2},
            "asked for 2 validations, got 4",
        ),
        (
            lambda txs: {"results": ok_body(txs)["results"][::-1]},
            "result 0 is for 'b', expected 'a'",
        ),
        (
            lambda txs: {"results": [{"score": 0.1}, {}]},
            "result 0 lacks required fields",
        ),
        (lambda txs: {"results": ["x", "y"]}, "result 0 lacks required fields"),
        (
            lambda txs: {
                "results": [
                    {**r, "is_fraudulent_transaction": "no"}
                    for r in ok_body(txs)["results"]
                ]
            },
            "result 0 is malformed",
        ),
        (
            lambda txs: {
                "results": [{**r, "score": "0.9"} for r in ok_body(txs)["results"]]
            },
            "malformed",
        ),
        (
            lambda txs: {
                "results": [{**r, "reasons": "big"} for r in ok_body(txs)["results"]]
            },
            "malformed",
        ),
    ],
)
def test_garbage_answers_raise_instead_of_defaulting(scripted, answer, match):
    server = scripted((200, answer))
    client = make_client(server.url)
    with pytest.raises(ValidatorProtocolError, match=match):
        client.validate_batch([payload("a"), payload("b")])
    assert len(server.requests) == 1


def test_unexpected_success_status_is_garbage(scripted):
    server = scripted((204, ""))
    with pytest.raises(ValidatorProtocolError, match="HTTP 204"):
        make_client(server.url).validate_batch([payload("a")])


def test_invalid_client_settings():
    with pytest.raises(ValueError, match="timeout_s > 0"):
        ValidatorClient("http://127.0.0.1:1", timeout_s=0)
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        ValidatorClient("http://127.0.0.1:1", max_batch_size=0)


# -- building requests from records -----------------------------------------------------------
def attributed(
    counterparty="a2", sender_bank="Bank A", amount=250.0, risk=35
) -> AttributedTransaction:
    tx = Transaction(
        transaction_id="t-9",
        account_id="a1",
        counterparty_account_id=counterparty,
        transaction_type="transfer",
        amount=amount,
        currency="USD",
        transaction_status="completed",
        datetime_occurred=datetime(2026, 2, 3, 14, 0, tzinfo=UTC),
        sender_bank=sender_bank,
        evaluation="unidentified",
    )
    return AttributedTransaction(tx, "Ann", risk)


RECEIVER = Account("a2", "Bo Receiver", bank="Bank B", bank_account="FR76-0002")
SENDER = Account(
    "a1",
    "Ann",
    bank="Bank A",
    bank_account="DE89-0001",
    created_at=datetime(2026, 2, 1, tzinfo=UTC),
)


def test_build_request_with_both_accounts():
    assert build_validation_request(attributed(), receiver=RECEIVER, sender=SENDER) == {
        "transaction_id": "t-9",
        "sender_bank_account": "DE89-0001",
        "receiver_details": {
            "name": "Bo Receiver",
            "bank": "Bank B",
            "bank_account": "FR76-0002",
            "account_id": "a2",
        },
        "sender_bank": "Bank A",
        "amount": 250.0,
        "currency": "USD",
        "transaction_type": "transfer",
        "risk_score": 35,
        "datetime_occurred": "2026-02-03T14:00:00+00:00",
        "account_created_at": "2026-02-01T00:00:00+00:00",
    }


def test_build_request_without_accounts():
    request = build_validation_request(attributed(sender_bank=None))
    assert request["sender_bank_account"] == "a1"
    assert request["receiver_details"] == {"account_id": "a2"}
    assert request["sender_bank"] is None and "account_created_at" not in request
    assert (
        build_validation_request(attributed(counterparty=None))["receiver_details"]
        is None
    )
    receiver_without_bank_account = Account("a2", "Bo", bank="Bank B")
    details = build_validation_request(
        attributed(), receiver=receiver_without_bank_account
    )["receiver_details"]
    assert details["bank_account"] == "a2"


def test_built_requests_are_accepted_and_used_by_the_validator(validator_server):
    requests_ = [
        build_validation_request(attributed(), receiver=RECEIVER, sender=SENDER),
        build_validation_request(
            attributed(counterparty=None, amount=60_000.0, risk=90)
        ),
        build_validation_request(attributed(counterparty="a1")),  # to itself
    ]
    requests_[1]["transaction_id"] = "t-10"
    requests_[2]["transaction_id"] = "t-11"
    results = make_client(validator_server.url, api_key=API_KEY).validate_batch(
        requests_
    )
    assert results[0].reasons == ("new_account",)
    assert results[1].is_fraudulent
    assert results[1].reasons == (
        "large_amount",
        "very_large_amount",
        "round_amount",
        "receiver_missing",
        "pipeline_risk",
    )
    assert results[2].reasons == ("receiver_incomplete", "receiver_is_sender")


def test_datetimes_in_requests_are_serialised(scripted):
    server = scripted()
    make_client(server.url).validate_batch(
        [payload("d", datetime_occurred=datetime(2026, 1, 1, tzinfo=UTC))]
    )
    assert (
        server.requests[0]["body"]["transactions"][0]["datetime_occurred"]
        == "2026-01-01T00:00:00+00:00"
    )


def test_connection_is_kept_alive_and_reused(scripted):
    server = scripted()
    client = make_client(server.url)
    client.validate_batch([payload("1")])
    client.validate_batch([payload("2")])
    assert (
        server.requests[0]["peer"] == server.requests[1]["peer"]
    )  # same client socket
