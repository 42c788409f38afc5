"""OpenTelemetry traces of /v1 requests, exported over OTLP/HTTP to a real receiver on
loopback (tests/gateway/otlp_receiver.py) and decoded with opentelemetry-proto.

Most tests run the session's in-process gateway (``gateway_server``) with tracing set up
from OTEL_* variables the test sets; the last one runs ``manage.py serve`` in a child
process configured by the environment alone, and reads its JSON log lines.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from aipk_site.infra import tracing
from tenants_app.models import ModelRoute
from tests.gateway.otlp_receiver import (
    ExportedSpan,
    OtlpReceiver,
    otlp_receiver_fixture,  # noqa: F401 -- fixture
)
from tests.gateway.processes import (
    AipkServer,
    aipk_servers_fixture,  # noqa: F401 -- fixture
    make_world,
    server_env,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

pytestmark = pytest.mark.django_db(transaction=True)

SERVER, INTERNAL = 2, 1  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2
TRACE_ID_HEADER = "x-aipk-trace-id"
PROMPT = "the secret plan is in the blue folder"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture
def traced(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch):
    """This process traces to the receiver, configured as a deployment would: OTEL_*."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.url + "/v1/traces")
    tracing.tracing_shutdown()
    assert tracing.tracing_setup()
    yield otlp_receiver
    tracing.tracing_shutdown()


@pytest.fixture
def untraced(monkeypatch: pytest.MonkeyPatch):
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tracing.tracing_shutdown()
    assert not tracing.tracing_setup()
    yield
    tracing.tracing_shutdown()


def chat(world, gateway_server, model: str, *, stream: bool = False, headers=None):
    body: dict = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return httpx.post(
        gateway_server.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {world.secret}", **(headers or {})},
        timeout=30,
    )


def by_name(spans: list[ExportedSpan]) -> dict[str, ExportedSpan]:
    names = [span.name for span in spans]
    assert len(names) == len(set(names)), names
    return {span.name: span for span in spans}


def two_candidate_route(world) -> str:
    """An alias whose first candidate refuses the model (a 403 the gateway fails over
    from) and whose second answers."""
    alias = f"steady-{secrets.token_hex(3)}"
    ModelRoute.objects.create(
        tenant=world.tenant,
        alias=alias,
        strategy="failover",
        candidates=[
            {"provider": "openai", "model": "gpt-4o-mini-fail-model_permission"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )
    return alias


def test_it_exports_a_request_span_with_routing_admission_and_attempt_children(
    world, gateway_server, traced
):
    response = chat(world, gateway_server, world.model("openai"))
    assert response.status_code == 200, response.text
    trace_id = response.headers[TRACE_ID_HEADER]
    assert len(trace_id) == 32 and int(trace_id, 16)
    spans = by_name(
        traced.wait_for_trace(
            trace_id,
            tracing.tracing_flush,
            names={"POST /v1/chat/completions", "routing", "admission", "upstream attempt"},
        )
    )
    assert set(spans) == {"POST /v1/chat/completions", "routing", "admission", "upstream attempt"}
    server = spans["POST /v1/chat/completions"]
    assert server.kind == SERVER
    assert server.parent_span_id == ""
    version, header_trace, header_span, flags = response.headers["traceresponse"].split("-")
    assert (version, header_trace, header_span) == ("00", trace_id, server.span_id)
    assert int(flags, 16) & 1  # sampled
    for child in ("routing", "admission", "upstream attempt"):
        assert spans[child].parent_span_id == server.span_id
        assert spans[child].kind == INTERNAL
        assert server.start_ns <= spans[child].start_ns <= spans[child].end_ns <= server.end_ns
    assert spans["routing"].end_ns <= spans["admission"].start_ns
    assert spans["admission"].end_ns <= spans["upstream attempt"].start_ns

    credential = world.providers["openai"].api_keys.get()
    attributes = server.attributes
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["aipk.request_id"] == response.headers["x-request-id"]
    assert attributes["aipk.request_id"] == response.json()["id"]
    assert attributes["aipk.tenant_id"] == world.tenant.pk
    assert attributes["aipk.key_id"] == world.key.pk
    assert attributes["aipk.provider"] == "openai"
    assert attributes["aipk.model"] == "gpt-4o-mini"
    assert attributes["aipk.credential_id"] == f"key:{credential.pk}"
    assert attributes["aipk.prompt_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert attributes["aipk.completion_tokens"] == response.json()["usage"]["completion_tokens"]
    assert attributes["aipk.cache_hit"] is False
    assert attributes["aipk.status"] == "success"
    assert "error.type" not in attributes
    assert server.status_code != STATUS_ERROR
    assert server.resource["service.name"] == "aipk"  # OTEL_SERVICE_NAME unset

    attempt = spans["upstream attempt"].attributes
    assert attempt["aipk.provider"] == "openai"
    assert attempt["aipk.model"] == "gpt-4o-mini"
    assert attempt["aipk.credential_id"] == f"key:{credential.pk}"
    assert attempt["aipk.status"] == "success"
    assert spans["routing"].attributes["aipk.candidates"] == 1


def test_it_times_a_streams_first_token_inside_its_attempt(world, gateway_server, traced):
    response = chat(world, gateway_server, world.model("anthropic"), stream=True)
    assert response.status_code == 200, response.text
    assert "data: [DONE]" in response.text
    trace_id = response.headers[TRACE_ID_HEADER]
    spans = by_name(
        traced.wait_for_trace(
            trace_id,
            tracing.tracing_flush,
            names={"POST /v1/chat/completions", "upstream attempt", "first token"},
        )
    )
    server, attempt, first = (
        spans["POST /v1/chat/completions"],
        spans["upstream attempt"],
        spans["first token"],
    )
    assert first.parent_span_id == attempt.span_id
    assert attempt.parent_span_id == server.span_id
    # from the attempt's start to the first chunk; the attempt lasts the whole stream
    assert first.start_ns == attempt.start_ns
    assert first.end_ns <= attempt.end_ns <= server.end_ns
    assert server.attributes["aipk.stream"] is True
    assert server.attributes["aipk.provider"] == "anthropic"
    assert attempt.attributes["aipk.completion_tokens"] > 0


def test_it_continues_the_callers_trace(world, gateway_server, traced):
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    response = chat(
        world,
        gateway_server,
        world.model("openai"),
        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
    )
    assert response.status_code == 200, response.text
    assert response.headers[TRACE_ID_HEADER] == caller_trace
    spans = by_name(
        traced.wait_for_trace(
            caller_trace, tracing.tracing_flush, names={"POST /v1/chat/completions"}
        )
    )
    assert spans["POST /v1/chat/completions"].parent_span_id == caller_span


def test_it_records_one_attempt_per_candidate_when_the_first_fails(world, gateway_server, traced):
    alias = two_candidate_route(world)
    response = chat(world, gateway_server, alias)
    assert response.status_code == 200, response.text
    assert response.headers["x-aipk-provider"] == "anthropic"
    trace_id = response.headers[TRACE_ID_HEADER]
    spans = traced.wait_for_trace(
        trace_id, tracing.tracing_flush, names={"POST /v1/chat/completions", "upstream attempt"}
    )
    server = next(span for span in spans if span.name == "POST /v1/chat/completions")
    attempts = sorted(
        (span for span in spans if span.name == "upstream attempt"), key=lambda s: s.start_ns
    )
    assert len(attempts) == 2
    failed, answered = attempts
    assert all(attempt.parent_span_id == server.span_id for attempt in attempts)
    assert failed.end_ns <= answered.start_ns
    assert failed.attributes["aipk.provider"] == "openai"
    assert failed.attributes["aipk.model"] == "gpt-4o-mini-fail-model_permission"
    assert failed.attributes["error.type"] == "permission_error"
    assert failed.attributes["aipk.upstream_status"] == 403
    assert failed.status_code == STATUS_ERROR
    assert failed.status_message == "permission_error"
    assert answered.attributes["aipk.provider"] == "anthropic"
    assert answered.status_code != STATUS_ERROR
    assert server.attributes["aipk.model_alias"] == alias
    assert server.attributes["aipk.provider"] == "anthropic"
    assert server.status_code != STATUS_ERROR
    routing = next(span for span in spans if span.name == "routing")
    assert routing.attributes["aipk.candidates"] == 2


def test_it_marks_a_failed_request_as_an_error_and_still_names_its_trace(
    world, gateway_server, traced
):
    response = chat(world, gateway_server, "openai/gpt-4o-mini-fail-model_permission")
    assert response.status_code == 403, response.text
    trace_id = response.headers[TRACE_ID_HEADER]
    spans = by_name(
        traced.wait_for_trace(
            trace_id,
            tracing.tracing_flush,
            names={"POST /v1/chat/completions", "upstream attempt"},
        )
    )
    server = spans["POST /v1/chat/completions"]
    assert server.status_code == STATUS_ERROR
    assert server.attributes["http.response.status_code"] == 403
    assert server.attributes["error.type"] == response.json()["error"]["code"]
    assert server.status_message == response.json()["error"]["code"]
    assert server.attributes["aipk.request_id"] == response.headers["x-request-id"]
    assert spans["upstream attempt"].status_code == STATUS_ERROR


def test_it_marks_a_stream_that_ends_with_an_error_event(world, gateway_server, traced):
    response = chat(world, gateway_server, "openai/gpt-4o-mini-fail-midstream_error", stream=True)
    assert response.status_code == 200  # the head had gone: the error is an event
    assert '"error"' in response.text
    spans = by_name(
        traced.wait_for_trace(
            response.headers[TRACE_ID_HEADER],
            tracing.tracing_flush,
            names={"POST /v1/chat/completions", "upstream attempt", "first token"},
        )
    )
    server, attempt = spans["POST /v1/chat/completions"], spans["upstream attempt"]
    assert server.status_code == STATUS_ERROR
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["aipk.status"] == "error"
    assert server.attributes["error.type"]
    assert attempt.status_code == STATUS_ERROR
    assert attempt.attributes["error.type"] == "server_error"


def test_it_names_a_span_by_its_route_not_by_the_id_asked_for(world, gateway_server, traced):
    response = httpx.get(
        gateway_server.url + "/v1/models/" + world.model("openai"),
        headers={"authorization": f"Bearer {world.secret}"},
    )
    assert response.status_code == 200, response.text
    spans = traced.wait_for_trace(
        response.headers[TRACE_ID_HEADER], tracing.tracing_flush, names={"GET /v1/models/{id}"}
    )
    assert [span.name for span in spans] == ["GET /v1/models/{id}"]
    assert spans[0].attributes["http.route"] == "/v1/models/{id}"
    assert spans[0].attributes["http.response.status_code"] == 200


def test_it_marks_a_refused_request_and_its_admission_span(world, gateway_server, traced):
    world.key.rpm = 1
    world.key.save()
    from aipk_site.gateway.key_auth import key_auth_cache_clear

    key_auth_cache_clear()
    assert chat(world, gateway_server, world.model("openai")).status_code == 200
    refused = chat(world, gateway_server, world.model("openai"))
    assert refused.status_code == 429, refused.text
    trace_id = refused.headers[TRACE_ID_HEADER]
    spans = by_name(
        traced.wait_for_trace(
            trace_id, tracing.tracing_flush, names={"POST /v1/chat/completions", "admission"}
        )
    )
    assert "upstream attempt" not in spans
    code = refused.json()["error"]["code"]
    assert spans["admission"].status_code == STATUS_ERROR
    assert spans["admission"].attributes["error.type"] == code
    assert spans["POST /v1/chat/completions"].attributes["error.type"] == code
    assert spans["POST /v1/chat/completions"].attributes["aipk.status"] == "refused"


def test_it_exports_no_secret_and_no_prompt(world, gateway_server, traced):
    alias = two_candidate_route(world)  # before a request loads the routes
    responses = [
        chat(world, gateway_server, world.model("openai")),
        chat(world, gateway_server, world.model("openai"), stream=True),
        chat(world, gateway_server, alias),
        chat(world, gateway_server, "openai/gpt-4o-mini-fail-model_permission"),
    ]
    for response in responses:
        traced.wait_for_trace(
            response.headers[TRACE_ID_HEADER],
            tracing.tracing_flush,
            names={"POST /v1/chat/completions", "routing", "admission", "upstream attempt"},
        )
    exported = b"".join(traced.bodies)
    credential = "sk-sim-openai-key-0001"
    for text in (world.secret, credential, PROMPT, "secret plan", world.tenant.name):
        assert text.encode() not in exported, text
    values = [str(v) for span in traced.spans for v in span.attributes.values()]
    assert not [v for v in values if world.secret[-8:] in v or "secret plan" in v]


def test_it_sends_no_trace_header_and_no_span_when_tracing_is_off(
    world, gateway_server, otlp_receiver, untraced, monkeypatch
):
    for stream in (False, True):
        response = chat(world, gateway_server, world.model("openai"), stream=stream)
        assert response.status_code == 200, response.text
        assert TRACE_ID_HEADER not in response.headers
        assert "traceresponse" not in response.headers
    refused = chat(world, gateway_server, "openai/no-such-model-fail-not_found")
    assert TRACE_ID_HEADER not in refused.headers
    # an endpoint with OTEL_SDK_DISABLED=true is still off
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.url + "/v1/traces")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracing.tracing_shutdown()
    assert not tracing.tracing_setup()
    response = chat(world, gateway_server, world.model("openai"))
    assert TRACE_ID_HEADER not in response.headers
    tracing.tracing_flush()
    assert otlp_receiver.bodies == []


# Django's own Celery fixup also listens to the signal and wants a real worker as sender
@pytest.mark.filterwarnings("ignore::celery.exceptions.FixupWarning")
def test_it_sets_up_tracing_when_a_celery_worker_starts(otlp_receiver, monkeypatch):
    from celery.signals import worker_init

    import aipk_site.celery  # noqa: F401 -- connects the worker's start-up

    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    tracing.tracing_shutdown()
    try:
        worker_init.send(sender=None)
        assert tracing.enabled
    finally:
        tracing.tracing_shutdown()


@pytest.mark.parametrize(
    ("environment", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_it_traces_only_when_an_endpoint_is_configured_and_the_sdk_is_not_disabled(
    environment, wanted
):
    assert tracing.tracing_wanted(environment) is wanted


def test_it_is_configured_by_the_environment_in_a_served_process(
    shared_database, simulator, aipk_servers, otlp_receiver, tmp_path
):
    world = make_world(shared_database, "traced", simulator.url)
    env = server_env(
        shared_database.url,
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.url,  # the SDK adds /v1/traces
        OTEL_EXPORTER_OTLP_HEADERS="x-collector-token=c0llect0r",
        OTEL_SERVICE_NAME="aipk-edge",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        OTEL_BSP_SCHEDULE_DELAY="100",
        LOG_FORMAT="json",
        GATEWAY_REQUEST_LOG="true",
    )
    env.pop("OTEL_SDK_DISABLED", None)
    server = AipkServer(env).start(tmp_path / "server.log")
    aipk_servers.append(server)
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": world.model("gpt-4o-mini"), "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    trace_id = response.headers[TRACE_ID_HEADER]
    spans = by_name(
        otlp_receiver.wait_for_trace(
            trace_id, lambda: None, names={"POST /v1/chat/completions", "upstream attempt"}
        )
    )
    server_span = spans["POST /v1/chat/completions"]
    assert server_span.resource["service.name"] == "aipk-edge"
    assert server_span.resource["deployment.environment"] == "test"
    assert all(h.get("x-collector-token") == "c0llect0r" for h in otlp_receiver.headers)

    request_id = response.headers["x-request-id"]
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    of_request = [line for line in lines if line.get("request_id") == request_id]
    assert of_request, server.logs()[-3000:]
    assert all(line["trace_id"] == trace_id for line in of_request)
    assert PROMPT.encode() not in b"".join(otlp_receiver.bodies)
