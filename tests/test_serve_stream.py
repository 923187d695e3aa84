"""serve with the official openai SDK (issue 29): streamed answers join into the unstreamed text, usage comes last
when asked, a scored arm's label scores come back from /v1/completions, and a missing key is called missing."""

import contextlib

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from tunewise.ship.bundle import Bundle  # noqa: E402
from tunewise.ship.serve import ServeSettings, serving  # noqa: E402

KEY = "tw-stream-test-key"
ARMS = ["zero_shot", "structured"]  # generated, scored (decoding: constrained)


@pytest.fixture(scope="module")
def servers(tiny_run):
    """arm -> (SDK client, model name, a stored row), one server per arm."""
    with contextlib.ExitStack() as stack:
        out = {}
        for arm in ARMS:
            bundle = Bundle.load(tiny_run.bundle(arm), device="cpu")
            url = stack.enter_context(serving(bundle, ServeSettings(port=0, api_key=KEY)))
            client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
            out[arm] = (client, bundle.name, tiny_run.rows(arm)[0])
        yield out


def ask_chat(client, name, text, **kw):
    return client.chat.completions.create(model=name, messages=[{"role": "user", "content": text}], **kw)


@pytest.mark.parametrize("arm", ARMS)
def test_a_streamed_chat_answer_joins_into_the_unstreamed_one(servers, arm):
    client, name, row = servers[arm]
    whole = ask_chat(client, name, row["input"])
    chunks = list(ask_chat(client, name, row["input"], stream=True))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole.choices[0].message.content == row["raw"]
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + [
        whole.choices[0].finish_reason]
    if arm == "zero_shot" and len(row["raw"].split()) > 1:
        assert len(chunks) > 3  # word by word


def test_usage_comes_in_a_last_chunk_without_choices_when_asked(servers):
    client, name, row = servers["zero_shot"]
    whole = ask_chat(client, name, row["input"])
    chunks = list(ask_chat(client, name, row["input"], stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage == whole.usage and last.usage.prompt_tokens > 0
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks[:-1])


def test_a_scored_arm_streams_its_label_with_its_logprobs(servers):
    client, name, row = servers["structured"]
    chunks = list(ask_chat(client, name, row["input"], stream=True, logprobs=True, top_logprobs=2))
    (content,) = [c for c in chunks if c.choices[0].delta.content]
    token = content.choices[0].logprobs.content[0]
    assert token.token == row["raw"] and token.top_logprobs[0].token == row["parsed"]
    assert chunks[-1].choices[0].model_extra["tunewise"]["parsed"] == row["parsed"]


@pytest.mark.parametrize("arm", ARMS)
def test_streamed_completions_join_into_the_unstreamed_ones(servers, tiny_run, arm):
    client, name, _ = servers[arm]
    prompts = [r["input"] for r in tiny_run.rows(arm)[:2]]
    whole = client.completions.create(model=name, prompt=prompts)
    chunks = list(client.completions.create(model=name, prompt=prompts, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    for choice in whole.choices:
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == choice.index]
        assert "".join(c.text for c in mine) == choice.text
        assert [c.finish_reason for c in mine] == [None] * (len(mine) - 1) + [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_completions_return_a_scored_arms_label_scores_as_logprobs(servers):
    client, name, row = servers["structured"]
    choice = client.completions.create(model=name, prompt=row["input"], logprobs=1).choices[0]
    scores = choice.model_extra["tunewise"]["scores"]
    assert choice.logprobs.tokens == [row["raw"]] and choice.logprobs.text_offset == [0]
    assert choice.logprobs.token_logprobs == [scores[row["raw"]]]
    assert choice.logprobs.top_logprobs == [{row["parsed"]: scores[row["parsed"]]}]
    everything = client.completions.create(model=name, prompt=row["input"], logprobs=5).choices[0]
    assert everything.logprobs.top_logprobs == [scores]  # two labels: all of them
    assert client.completions.create(model=name, prompt=row["input"]).choices[0].logprobs is None
    streamed = [c for c in client.completions.create(model=name, prompt=row["input"], logprobs=1, stream=True)
                if c.choices[0].text]
    assert [c.choices[0].logprobs for c in streamed] == [choice.logprobs]


def test_a_request_refused_before_streaming_is_an_ordinary_json_error(servers):
    client, _, row = servers["zero_shot"]
    with pytest.raises(openai.NotFoundError) as err:
        ask_chat(client, "gpt-4", row["input"], stream=True)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        ask_chat(client, servers["zero_shot"][1], row["input"], stream=True, n=2)


def test_the_wire_format_is_server_sent_events_closed_by_done(servers):
    import httpx
    client, name, row = servers["zero_shot"]
    body = {"model": name, "messages": [{"role": "user", "content": row["input"]}], "stream": True}
    response = httpx.post(f"{client.base_url}chat/completions", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: {") for e in events[:-2])


def test_a_missing_key_is_called_missing_and_a_wrong_one_incorrect(servers):
    import httpx
    client, name, row = servers["zero_shot"]
    body = {"model": name, "messages": [{"role": "user", "content": row["input"]}]}
    missing = httpx.post(f"{client.base_url}chat/completions", json=body, timeout=60)
    assert missing.status_code == 401
    error = missing.json()["error"]
    assert error["message"].startswith("You didn't provide an API key.") and error["code"] is None
    assert error["type"] == "invalid_request_error"
    wrong = openai.OpenAI(base_url=str(client.base_url), api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        ask_chat(wrong, name, row["input"])
    assert err.value.code == "invalid_api_key" and "incorrect" in err.value.message
