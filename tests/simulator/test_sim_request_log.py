"""/_sim/requests: what clients sent, with every credential masked."""

import httpx
import openai

from tests.simulator.sim_helpers import openai_client


async def test_it_records_requests_with_credentials_masked(simulator):
    simulator.clear_requests()
    client = openai_client(
        simulator.base_url("openai"), key="sk-proj-very-secret-WXYZ", organization="org-sim-42"
    )
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    async with httpx.AsyncClient() as http:
        await http.post(
            simulator.base_url("gemini") + "/v1beta/models/gemini-2.0-flash:generateContent",
            params={"key": "AIza-secret-KEY9"},
            json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
        await http.post(
            simulator.base_url("anthropic") + "/v1/messages",
            headers={"x-api-key": "sk-ant-secret-ABCD", "anthropic-version": "2023-06-01"},
            json={"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []},
        )
        listed = (await http.get(simulator.url + "/_sim/requests")).json()

    assert listed == simulator.requests()
    openai_request, gemini_request, anthropic_request = listed
    assert openai_request["method"] == "POST"
    assert openai_request["path"] == "/openai/v1/chat/completions"
    assert openai_request["headers"]["authorization"] == "Bearer ...WXYZ"
    assert openai_request["headers"]["openai-organization"] == "org-sim-42"
    assert openai_request["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert gemini_request["query"] == {"key": "...KEY9"}
    assert anthropic_request["headers"]["x-api-key"] == "...ABCD"
    assert anthropic_request["headers"]["anthropic-version"] == "2023-06-01"
    assert "secret" not in str(listed)


async def test_it_keeps_only_the_last_hundred_and_can_be_cleared(simulator):
    simulator.clear_requests()
    async with httpx.AsyncClient() as http:
        for i in range(105):
            await http.get(simulator.base_url("openai") + f"/models/m{i}")
        listed = (await http.get(simulator.url + "/_sim/requests")).json()
        assert len(listed) == 100
        assert listed[0]["path"].endswith("/m5") and listed[-1]["path"].endswith("/m104")
        cleared = await http.delete(simulator.url + "/_sim/requests")
        assert cleared.status_code == 204
        assert (await http.get(simulator.url + "/_sim/requests")).json() == []


async def test_it_records_a_request_that_never_gets_an_answer(simulator):
    simulator.clear_requests()
    client = openai_client(simulator.base_url("openai"), timeout=0.2)
    try:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-sim-fail": "hang"},
        )
    except openai.APITimeoutError:
        pass
    [entry] = simulator.requests()
    assert entry["headers"]["x-sim-fail"] == "hang"
