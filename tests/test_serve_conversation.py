"""Served as measured, for conversations (issue 29): a conversation task's bundle sends a request's whole history
through the arm's prompt exactly as the run sent its test conversations; a client's system message is appended
to the arm's, never put in its place; predict reads conversation rows; a single-turn bundle is unchanged."""

import json

import pytest

import tunewise
from bundle_fixtures import ROWS, tiny_task
from tunewise.errors import DataError
from tunewise.ship.bundle import Bundle, build_prompter, read_bundle
from tunewise.ship.export import export
from tunewise.ship.predict import predict_file
from tunewise.store.sqlite import Store
from tunewise.task import validate_task
from tunewise.task.data import Example, load_examples

pytest.importorskip("fastapi")

ARMS = [{"type": "zero_shot"},
        {"type": "structured"},
        {"type": "few_shot", "k": 2},
        {"type": "few_shot", "name": "similar", "k": 2, "selection": "similar"},
        {"type": "few_shot", "name": "listed", "k": 2, "layout": "list"},
        {"type": "retrieval", "passages": 2}]
ARM_NAMES = [a.get("name", a["type"]) for a in ARMS]


def conversations(n: int = 36) -> list[dict]:
    """Short support conversations: some with a system message of their own, some of one user turn."""
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": f"The customer is on plan {'AB'[i % 2]}."}] if i % 3 == 0 else []
        if i % 4:
            messages += [{"role": "user", "content": f"Hello, I am customer {i}."},
                         {"role": "assistant", "content": f"Welcome back, customer {i}: how can I help?"}]
        messages += [{"role": "user", "content": f"Where is my order {1000 + i}?"},
                     {"role": "assistant", "content": f"Order {1000 + i} was shipped by UPS."}]
        rows.append({"messages": messages})
    return rows


def conversation_task(root, model="fake", arms=ARMS, **extra):
    data = root / "support.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in conversations()))
    knowledge = root / "kb.jsonl"
    knowledge.write_text("".join(json.dumps({"text": f"Order {1000 + i} left the warehouse on day {i}."}) + "\n"
                                 for i in range(36)))
    spec = {"name": "support", "type": "generation", "instruction": "Answer the customer's last message.",
            "context": "An online shop.", "data": {"path": str(data)}, "model": model,
            "generation": {"max_tokens": 8}, "splits": {"train": 0.5, "dev": 0.2, "test": 0.3, "seed": 0},
            "consistency": {"enabled": False}, "knowledge": {"path": str(knowledge), "field": "text"}, "arms": arms}
    spec.update(extra)
    return validate_task(spec)


class Recording:
    """The bundle's backend, recording every prompt it is sent."""

    def __init__(self, backend):
        self.backend, self.sent = backend, []

    def generate(self, requests, progress=None):
        self.sent += [r.messages for r in requests]
        return self.backend.generate(requests, progress)

    def score_choices(self, requests, progress=None):
        self.sent += [r.messages for r in requests]
        return self.backend.score_choices(requests, progress)

    def __getattr__(self, name):
        return getattr(self.backend, name)


class ConversationRun:
    def __init__(self, root):
        self.task = conversation_task(root)
        result = tunewise.run(self.task, home=root / "h", progress=False)
        self.store, self.run_id, self.root = Store(result.store_path), result.run_id, root
        self.examples = {e.id: e for e in load_examples(self.task)}
        self.bundles = {arm: export(self.store, self.run_id, root / "bundles" / arm, arm) for arm in ARM_NAMES}

    def rows(self, arm):
        return self.store.predictions(self.run_id, arm)

    def summary(self, arm):
        return next(a["summary"] for a in self.store.arms(self.run_id) if a["name"] == arm)

    def load(self, arm) -> Bundle:
        bundle = Bundle.load(self.bundles[arm], device="cpu")
        bundle.backend = Recording(bundle.backend)
        return bundle


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    return ConversationRun(tmp_path_factory.mktemp("conversation-run"))


def app_client(bundle, **settings):
    from fastapi.testclient import TestClient

    from tunewise.ship.serve import ServeSettings, create_app
    client = TestClient(create_app(bundle, ServeSettings(**settings)))
    client.model = bundle.name
    return client


def chat(client, messages, **body):
    return client.post("/v1/chat/completions", json={"model": client.model, "messages": messages, **body})


# -- the bundle ---------------------------------------------------------------------------------------
def test_the_bundle_knows_its_task_reads_conversations_and_keeps_its_examples_messages(conv_run):
    _, spec = read_bundle(conv_run.bundles["few_shot"])
    assert spec.task["data"]["input"] is None  # prompt.json records the task's data section
    bundle = conv_run.load("few_shot")
    assert bundle.conversation
    shots = build_prompter(spec).shots
    assert all(isinstance(s.messages, tuple) and s.messages for s in shots)
    assert any(s.messages[0]["role"] == "system" for s in shots + build_prompter(
        read_bundle(conv_run.bundles["similar"])[1]).pool)  # a conversation's own system message kept
    for shot in shots:  # rebuilt exactly: the train conversations the run showed
        original = next(e for e in conv_run.examples.values() if e.input == shot.input)
        assert shot.messages == original.messages and shot.target == original.target
    (example,) = bundle.examples([[{"role": "user", "content": "Where is my order 1003?"}]], ids=["a"])
    assert example.id == "a" and example.messages == ({"role": "user", "content": "Where is my order 1003?"},)
    assert bundle.examples(["Where is my order 1003?"])[0].messages == example.messages  # a text: one user turn
    with pytest.raises(DataError, match=r"messages\[0\]\.role: unknown role 'bot'"):
        bundle.examples([[{"role": "bot", "content": "hi"}]])
    with pytest.raises(DataError, match="the reply follows an assistant message"):
        bundle.examples([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]])


def test_a_single_turn_bundles_examples_are_written_as_before(tmp_path):
    data = tmp_path / "words.csv"
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    task = tiny_task(data, "fake", arms=[{"type": "few_shot", "k": 2}])
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    out = export(Store(result.store_path), result.run_id, tmp_path / "b", "few_shot")
    spec = json.loads((out / "prompt.json").read_text())
    assert spec["shots"] and all(set(s) == {"input", "target"} for s in spec["shots"])
    bundle = Bundle.load(out)
    assert not bundle.conversation and bundle.examples(["Word: happy"])[0].messages is None


# -- serve --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arm", ARM_NAMES)
def test_a_served_conversation_is_sent_exactly_as_the_run_sent_it(conv_run, arm):
    """Each test conversation's history, sent to the server, reaches the model as the run's prompt for it did
    (its own system message sent as the client's), and the answer is the stored one."""
    bundle = conv_run.load(arm)
    rows = conv_run.rows(arm)
    assert any(conv_run.examples[r["example_id"]].messages[0]["role"] == "system" for r in rows)
    assert any(len(conv_run.examples[r["example_id"]].messages) > 2 for r in rows)
    with app_client(bundle) as client:
        for row in rows:
            history = list(conv_run.examples[row["example_id"]].messages)
            response = chat(client, history)
            assert response.status_code == 200, response.text
            assert bundle.backend.sent[-1] == row["messages"], row["example_id"]
            assert response.json()["choices"][0]["message"]["content"] == row["raw"]
    assert len(bundle.backend.sent) == len(rows)


def test_the_clients_system_messages_are_appended_to_the_arms(conv_run):
    bundle = conv_run.load("structured")
    arm_system = bundle.prompter.system
    turns = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi: how can I help?"},
             {"role": "user", "content": "Where is my order 1001?"}]
    with app_client(bundle) as client:
        assert chat(client, [{"role": "system", "content": "Be brief."}, *turns]).status_code == 200
        sent = bundle.backend.sent[-1]
        assert sent == [{"role": "system", "content": f"{arm_system}\n\nBe brief."}, *turns]
        # several system (or developer) messages, wherever they stand, are joined into one, in order
        several = [{"role": "developer", "content": "Be brief."}, turns[0],
                   {"role": "system", "content": [{"type": "text", "text": "Use "}, {"type": "text", "text": "UPS."}]},
                   *turns[1:]]
        assert chat(client, several).status_code == 200
        assert bundle.backend.sent[-1] == [
            {"role": "system", "content": f"{arm_system}\n\nBe brief.\n\nUse UPS."}, *turns]
        # no system message: the arm's alone
        assert chat(client, turns).status_code == 200
        assert bundle.backend.sent[-1] == [{"role": "system", "content": arm_system}, *turns]
        # a completion's prompt is one user message
        done = client.post("/v1/completions", json={"model": client.model, "prompt": "Where is my order 1001?"})
        assert done.status_code == 200, done.text
        assert bundle.backend.sent[-1] == [{"role": "system", "content": arm_system}, turns[-1]]


def test_a_retrieval_arm_puts_the_clients_system_message_before_its_passages(conv_run):
    bundle = conv_run.load("retrieval")
    with app_client(bundle) as client:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is order 1005?"}]
        assert chat(client, messages).status_code == 200
    system = bundle.backend.sent[-1][0]["content"]
    assert system.startswith(f"{bundle.prompter.system}\n\nBe brief.\n\nRelevant passages")
    assert "Order 1005 left the warehouse" in system


BAD = {
    "last message the assistant's": ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                     "the last message must be the user's input"),
    "a tool message": ([{"role": "user", "content": "a"}, {"role": "tool", "content": "{}"},
                        {"role": "user", "content": "b"}], "messages[1]: tool messages are not supported"),
    "an empty assistant message": ([{"role": "user", "content": "a"}, {"role": "assistant", "content": " "},
                                    {"role": "user", "content": "b"}], "messages[1].content: empty content"),
    "an assistant message without content": ([{"role": "user", "content": "a"}, {"role": "assistant"},
                                              {"role": "user", "content": "b"}],
                                             "messages[1].content: expected text content, got null"),
    "only a system message": ([{"role": "system", "content": "a"}], "the last message must be the user's input"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_conversation_gets_an_openai_error_naming_the_message(conv_run, case):
    messages, why = BAD[case]
    with app_client(conv_run.load("zero_shot")) as client:
        response = chat(client, messages)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert why in error["message"] and error["type"] == "invalid_request_error" and error["param"] == "messages"
        assert chat(client, [{"role": "user", "content": "Hi."}]).status_code == 200  # still serving


def test_a_single_turn_bundle_answers_the_last_user_message_alone(tmp_path):
    data = tmp_path / "words.csv"
    data.write_text("word,label\n" + "".join(f"{w},{label}\n" for w, label in ROWS))
    task = tiny_task(data, "fake", arms=[{"type": "structured"}])
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    bundle = Bundle.load(export(Store(result.store_path), result.run_id, tmp_path / "b", "structured"))
    bundle.backend = Recording(bundle.backend)
    messages = [{"role": "system", "content": "not sent"}, {"role": "user", "content": "Word: sad0"},
                {"role": "assistant", "content": "negative"}, {"role": "user", "content": "Word: happy0"}]
    with app_client(bundle) as client:
        assert chat(client, messages).status_code == 200
    expected = bundle.prompter.messages(Example(id="x", input="Word: happy0", target=None, line=0))
    assert bundle.backend.sent == [expected]
    assert "not sent" not in json.dumps(expected) and "sad0" not in json.dumps(expected)


# -- predict ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arm", ["zero_shot", "similar"])
def test_predict_reads_conversation_rows_and_scores_their_final_replies(conv_run, tmp_path, arm):
    rows = conv_run.rows(arm)
    inputs = tmp_path / "test.jsonl"
    lines = []
    for i, row in enumerate(rows):
        example = conv_run.examples[row["example_id"]]
        messages = [*example.messages, {"role": "assistant", "content": example.target}]
        if i % 2:  # ShareGPT's {from, value}, in a `conversations` field
            names = {"user": "human", "assistant": "gpt", "system": "system"}
            lines.append({"id": row["example_id"],
                          "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in messages]})
        else:
            lines.append({"id": row["example_id"], "messages": messages})
    inputs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bundle = conv_run.load(arm)
    result = predict_file(bundle, inputs, tmp_path / "out.jsonl", progress=False)
    answers = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [a["answer"] for a in answers] == [r["raw"] for r in rows]
    assert [a["input"] for a in answers] == [r["input"] for r in rows]  # the transcript, as the run stored it
    assert [a["target"] for a in answers] == [r["target"] for r in rows]
    assert bundle.backend.sent == [r["messages"] for r in rows]
    stored = conv_run.summary(arm)["metrics"]
    assert {k: v["value"] for k, v in result.summary["metrics"].items()} == {k: v["value"] for k, v in stored.items()}


def test_predict_answers_a_conversation_ending_with_the_users_message(conv_run, tmp_path):
    inputs = tmp_path / "open.jsonl"
    inputs.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Where is my order 1002?"}]}) + "\n")
    bundle = conv_run.load("structured")
    result = predict_file(bundle, inputs, tmp_path / "out.jsonl", progress=False)
    (answer,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result.summary is None and "target" not in answer
    assert answer["input"] == "system: Be brief.\nuser: Where is my order 1002?"
    assert bundle.backend.sent == [[{"role": "system", "content": f"{bundle.prompter.system}\n\nBe brief."},
                                    {"role": "user", "content": "Where is my order 1002?"}]]


MALFORMED = {
    "an unknown role": ({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
                        "messages[1].role: unknown role 'bot'"),
    "an empty message": ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
                                       {"role": "user", "content": "c"}]}, "messages[1].content: empty content"),
    "a late system message": ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
                              "messages[1].role: a system message after the conversation started"),
    "a reply without a question": ({"messages": [{"role": "assistant", "content": "a"}]},
                                   "messages: no user message before the final assistant message"),
    "no messages": ({"text": "a"}, "messages: missing field"),
    "tool calls": ({"messages": [{"role": "user", "content": "a", "tool_calls": []}]},
                   "messages[0].tool_calls: message key 'tool_calls' is not read"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_predict_refuses_a_malformed_conversation_in_one_line(conv_run, tmp_path, case):
    row, why = MALFORMED[case]
    inputs = tmp_path / "in.jsonl"
    good = {"messages": [{"role": "user", "content": "Where is my order 1002?"}]}
    inputs.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as caught:
        predict_file(conv_run.load("zero_shot"), inputs, tmp_path / "out.jsonl", progress=False)
    message = str(caught.value)
    assert message.startswith(f"{inputs}:2: {why}") and "\n" not in message
    assert not (tmp_path / "out.jsonl").exists()


# -- the card -----------------------------------------------------------------------------------------
def test_the_card_shows_a_conversation_sent_as_a_message_list(conv_run, tmp_path):
    card = (conv_run.bundles["structured"] / "README.md").read_text()
    assert 'messages = [{"role": "system"' in card and "client.chat.completions.create(" in card
    assert "appended to the arm's system message" in card and '{"messages": [...]}' in card


# -- a real model ---------------------------------------------------------------------------------------
def test_the_tiny_model_serves_a_conversation_as_measured(tmp_path, tiny_model_dir):
    """With a local model (its chat template, its context check): the served answers are the stored ones."""
    task = conversation_task(tmp_path, model=str(tiny_model_dir), arms=[{"type": "structured"}], batch_size=8,
                             generation={"max_tokens": 4})
    result = tunewise.run(task, home=tmp_path / "h", progress=False)
    store = Store(result.store_path)
    bundle = Bundle.load(export(store, result.run_id, tmp_path / "b", "structured"), device="cpu")
    examples = {e.id: e for e in load_examples(task)}
    rows = store.predictions(result.run_id, "structured")[:6]
    with app_client(bundle) as client:
        for row in rows:
            response = chat(client, list(examples[row["example_id"]].messages))
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == row["raw"]
        long = chat(client, [{"role": "user", "content": "order " * 400}])
        assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"


def test_predict_reads_the_tasks_own_messages_field_or_openais(conv_run):
    from tunewise.ship.predict import _conversation_row
    task = conv_run.task.model_copy(update={"data": conv_run.task.data.model_copy(update={"messages": "dialog"})})
    turns = [{"role": "user", "content": "Where is my order 1002?"},
             {"role": "assistant", "content": "Order 1002 was shipped by UPS."}]
    where = {"file": "in.jsonl", "line": 1}
    for field in ("dialog", "messages"):
        assert _conversation_row(task, {field: turns}, where) == (tuple(turns[:1]), turns[1]["content"])
    with pytest.raises(DataError, match=r"in.jsonl:1: dialog: missing field"):
        _conversation_row(task, {"text": "hi"}, where)
    labelled = conv_run.task.model_copy(update={"data": conv_run.task.data.model_copy(update={"target": "label"})})
    assert _conversation_row(labelled, {"messages": turns[:1], "label": "late"}, where) == (tuple(turns[:1]), "late")
    assert _conversation_row(labelled, {"messages": turns[:1]}, where) == (tuple(turns[:1]), None)
    with pytest.raises(DataError, match=r"messages\[1\]: the conversation follows an assistant message"):
        _conversation_row(labelled, {"messages": turns, "label": "late"}, where)
