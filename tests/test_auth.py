"""Request authentication (kueue/auth.py): HMAC tokens, clock window, one-time nonces."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from pathlib import Path

import grpc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kueue import auth, rpc
from kueue.v1 import cluster_service_pb2 as cs
from kueue.v1 import cluster_service_pb2_grpc as cs_grpc
from kueue.v1 import job_service_pb2 as js
from kueue.v1 import job_service_pb2_grpc as js_grpc

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-" + "x" * 57
METHOD = "/kueue.v1.JobService/SubmitJobs"
NOW = 1_700_000_000.0

# The worked example of protos/README.md, checked here so the document stays true.
EXAMPLE_SECRET = "correct horse battery staple"
EXAMPLE_TIMESTAMP = "1700000000"
EXAMPLE_NONCE = "0123456789abcdef0123456789abcdef"
EXAMPLE_MAC = "9256908ec002b8cfd74368a20e375f09d15da991829cbc3bd1dd5a097d964139"


def verifier() -> auth.Verifier:
    return auth.Verifier(SECRET)


def token(secret: str = SECRET, method: str = METHOD, now: float = NOW) -> str:
    return auth.make_token(secret, method, now=now)


# ---------------------------------------------------------------- the scheme


def test_token_format() -> None:
    assert re.fullmatch(r"v1 \d+ [0-9a-f]{32} [0-9a-f]{64}", token())
    assert token().split(" ")[1] == "1700000000"


def test_metadata_carries_the_token_under_the_documented_key() -> None:
    ((key, value),) = auth.metadata(SECRET, METHOD)
    assert key == "x-kueue-auth" == auth.METADATA_KEY
    assert verifier().check(METHOD, value).ok


def test_mac_is_hmac_sha256_of_method_timestamp_nonce() -> None:
    expected = hmac.new(
        EXAMPLE_SECRET.encode(),
        f"{METHOD}\n{EXAMPLE_TIMESTAMP}\n{EXAMPLE_NONCE}".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert auth.mac(EXAMPLE_SECRET, METHOD, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE) == expected == EXAMPLE_MAC


def test_readme_worked_example_matches_the_code() -> None:
    readme = (ROOT / "protos" / "README.md").read_text()
    for fact in (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, EXAMPLE_MAC, METHOD, "x-kueue-auth"):
        assert fact in readme, f"protos/README.md no longer shows {fact!r} of the worked example"


def test_nonces_are_fresh() -> None:
    nonces = {token().split(" ")[2] for _ in range(100)}
    assert len(nonces) == 100


# ---------------------------------------------------------------- acceptance


def test_valid_token_verifies() -> None:
    verdict = verifier().check(METHOD, token(), now=NOW)
    assert verdict.ok
    assert verdict.reason == ""


def test_token_built_by_hand_from_the_documented_recipe_verifies() -> None:
    stamp, nonce = "1700000000", "any-nonce-the-client-likes"
    mac = hmac.new(SECRET.encode(), f"{METHOD}\n{stamp}\n{nonce}".encode(), hashlib.sha256).hexdigest()
    assert verifier().check(METHOD, f"v1 {stamp} {nonce} {mac}", now=NOW).ok


def test_many_distinct_tokens_verify() -> None:
    v = verifier()
    assert all(v.check(METHOD, token(), now=NOW).ok for _ in range(200))


@pytest.mark.parametrize("skew", [-300, -299, -1, 0, 1, 299, 300])
def test_clock_skew_within_window_is_accepted(skew: int) -> None:
    assert verifier().check(METHOD, token(now=NOW + skew), now=NOW).ok


# ---------------------------------------------------------------- refusals


def test_wrong_secret_is_refused_saying_the_secret_does_not_match() -> None:
    verdict = verifier().check(METHOD, token(secret="another secret"), now=NOW)
    assert not verdict.ok
    assert "secret does not match" in verdict.reason


def test_replayed_token_is_refused() -> None:
    v = verifier()
    t = token()
    assert v.check(METHOD, t, now=NOW).ok
    verdict = v.check(METHOD, t, now=NOW + 1)
    assert not verdict.ok
    assert "replayed" in verdict.reason


def test_replay_is_refused_until_the_token_expires() -> None:
    v = verifier()
    t = token()
    assert v.check(METHOD, t, now=NOW - auth.CLOCK_WINDOW).ok
    # The nonce must be remembered for as long as the timestamp stays acceptable.
    for later in (0, auth.CLOCK_WINDOW, 2 * auth.CLOCK_WINDOW - 1):
        assert not v.check(METHOD, t, now=NOW - auth.CLOCK_WINDOW + later).ok
    assert not v.check(METHOD, t, now=NOW + auth.CLOCK_WINDOW + 1).ok


def test_replay_on_another_method_is_refused() -> None:
    v = verifier()
    t = token()
    assert v.check(METHOD, t, now=NOW).ok
    assert not v.check("/kueue.v1.JobService/CancelJob", t, now=NOW).ok


@pytest.mark.parametrize("skew", [-10_000, -301, 301, 86_400])
def test_clock_skew_beyond_window_is_refused_as_a_clock_problem(skew: int) -> None:
    verdict = verifier().check(METHOD, token(now=NOW + skew), now=NOW)
    assert not verdict.ok
    assert "clock" in verdict.reason
    assert "secret" not in verdict.reason


def test_custom_window() -> None:
    v = auth.Verifier(SECRET, window=5)
    assert v.check(METHOD, token(now=NOW - 5), now=NOW).ok
    assert "clock" in v.check(METHOD, token(now=NOW - 6), now=NOW).reason


def test_token_for_another_method_is_refused() -> None:
    t = token(method="/kueue.v1.JobService/ListJobs")
    assert not verifier().check(METHOD, t, now=NOW).ok


def test_missing_token_is_refused_mentioning_the_shared_secret() -> None:
    for missing in (None, ""):
        verdict = verifier().check(METHOD, missing, now=NOW)
        assert not verdict.ok
        assert "secret" in verdict.reason


def _tamper(t: str, index: int, value: str) -> str:
    parts = t.split(" ")
    parts[index] = value
    return " ".join(parts)


@pytest.mark.parametrize(
    "bad",
    [
        "v1",
        "garbage",
        "v1 1700000000 nonce",
        "v2 1700000000 nonce " + "0" * 64,
        "V1 1700000000 nonce " + "0" * 64,
        "v1 notanumber nonce " + "0" * 64,
        "v1 1700000000 nonce " + "0" * 64 + " extra",
        "v1  1700000000 nonce " + "0" * 64,
        "v1\t1700000000\tnonce\t" + "0" * 64,
        " v1 1700000000 nonce " + "0" * 64,
        "v1 1700000000 nonce " + "0" * 64 + "\n",
        "v1 1700000000 nonce " + "0" * 64 + " ",
    ],
)
def test_malformed_tokens_are_refused(bad: str) -> None:
    assert not verifier().check(METHOD, bad, now=NOW).ok


@pytest.mark.parametrize(
    "index, value",
    [
        (0, "v0"),  # scheme
        (1, "1700000001"),  # timestamp
        (2, "f" * 32),  # nonce
        (3, "0" * 64),  # mac
        (3, ""),  # empty mac
    ],
)
def test_tampered_tokens_are_refused(index: int, value: str) -> None:
    assert not verifier().check(METHOD, _tamper(token(), index, value), now=NOW).ok


def test_uppercase_mac_is_refused() -> None:
    t = token()
    assert not verifier().check(METHOD, _tamper(t, 3, t.split(" ")[3].upper()), now=NOW).ok


def test_refused_tokens_do_not_burn_nonces() -> None:
    v = verifier()
    t = token()
    assert not v.check("/kueue.v1.JobService/CancelJob", t, now=NOW).ok
    assert v.check(METHOD, t, now=NOW).ok


def test_absurd_timestamp_with_valid_mac_is_refused_not_raised() -> None:
    # Only a holder of the secret can get past the MAC, but it must still get a
    # clean refusal (UNAUTHENTICATED), not an exception (UNKNOWN).
    stamp, nonce = "9" * 400, "n"
    t = f"v1 {stamp} {nonce} {auth.mac(SECRET, METHOD, stamp, nonce)}"
    assert not verifier().check(METHOD, t, now=NOW).ok


# ---------------------------------------------------------------- properties

_parts = st.text(max_size=80)
# HMAC pads keys with NUL bytes, so "k" and "k\0" are the same key: leave NUL out.
_secrets = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=60
)


@settings(max_examples=400, deadline=None)
@given(candidate=st.text(max_size=300))
def test_arbitrary_strings_never_raise_and_are_refused(candidate: str) -> None:
    verdict = verifier().check(METHOD, candidate, now=NOW)
    assert not verdict.ok
    assert verdict.reason


@settings(max_examples=400, deadline=None)
@given(stamp=_parts, nonce=_parts, mac=_parts)
# Inputs that once made the verifier raise instead of refusing:
@example(stamp="0", nonce="", mac="\x80")  # non-ASCII MAC: hmac.compare_digest raised TypeError
@example(stamp="1700000000", nonce="n", mac="é" * 64)
@example(stamp="1700000000", nonce="\u00e9", mac="0" * 64)
@example(stamp="\u0661\u0662", nonce="n", mac="0" * 64)  # Arabic-Indic digits: int() takes them
@example(stamp="9" * 5000, nonce="n", mac="0" * 64)  # int() refuses over 4300 digits
def test_well_shaped_arbitrary_tokens_never_raise_and_are_refused(stamp: str, nonce: str, mac: str) -> None:
    # Four space-separated fields with the right scheme get past the first checks.
    verdict = verifier().check(METHOD, f"v1 {stamp} {nonce} {mac}", now=NOW)
    assert not verdict.ok
    assert verdict.reason


@settings(max_examples=200, deadline=None)
@given(secret=_secrets, other=_secrets)
def test_only_the_same_secret_verifies(secret: str, other: str) -> None:
    t = auth.make_token(secret, METHOD, now=NOW)
    assert auth.Verifier(secret).check(METHOD, t, now=NOW).ok
    assert auth.Verifier(other).check(METHOD, t, now=NOW).ok == (secret == other)


# ---------------------------------------------------------------- over gRPC


def test_server_interceptor_refuses_with_unauthenticated() -> None:
    """kueue.rpc.AuthInterceptor in front of a real server: good tokens pass,
    every kind of bad one ends in UNAUTHENTICATED with the verifier's reason,
    for unary and streaming calls alike."""

    class Cluster(cs_grpc.ClusterServiceServicer):
        async def GetServerInfo(self, request, context):
            return cs.GetServerInfoResponse(server_name="test")

    class Jobs(js_grpc.JobServiceServicer):
        async def WatchJobs(self, request, context):
            yield js.WatchJobsResponse(removed=True, removed_id=7)

    info_method = "/kueue.v1.ClusterService/GetServerInfo"
    watch_method = "/kueue.v1.JobService/WatchJobs"

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[rpc.AuthInterceptor(SECRET)])
        cs_grpc.add_ClusterServiceServicer_to_server(Cluster(), server)
        js_grpc.add_JobServiceServicer_to_server(Jobs(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                cluster = cs_grpc.ClusterServiceStub(channel)
                jobs = js_grpc.JobServiceStub(channel)

                async def info(metadata=None) -> cs.GetServerInfoResponse:
                    return await cluster.GetServerInfo(
                        cs.GetServerInfoRequest(), metadata=metadata, timeout=10
                    )

                async def watch(metadata=None) -> list[js.WatchJobsResponse]:
                    call = jobs.WatchJobs(js.WatchJobsRequest(ids=[7]), metadata=metadata, timeout=10)
                    return [message async for message in call]

                async def refused(coro, reason: str) -> None:
                    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
                        await coro
                    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
                    assert reason in excinfo.value.details()

                good = auth.metadata(SECRET, info_method)
                assert (await info(good)).server_name == "test"
                assert (await watch(auth.metadata(SECRET, watch_method)))[0].removed_id == 7
                # Through the wrapper every program uses.
                authed = rpc.AuthedStub(cluster, "kueue.v1.ClusterService", SECRET)
                assert (
                    await authed.GetServerInfo(cs.GetServerInfoRequest(), timeout=10)
                ).server_name == "test"

                await refused(info(good), "replayed")
                await refused(info(), "no authentication token")
                await refused(info(auth.metadata("wrong", info_method)), "secret does not match")
                await refused(info(auth.metadata(SECRET, watch_method)), "secret does not match")
                stale = ((auth.METADATA_KEY, auth.make_token(SECRET, info_method, now=NOW)),)
                await refused(info(stale), "clock")
                await refused(info(((auth.METADATA_KEY, "v1 x y z"),)), "malformed")
                await refused(watch(auth.metadata("wrong", watch_method)), "secret does not match")
                await refused(watch(), "no authentication token")
        finally:
            await server.stop(None)

    asyncio.run(scenario())
