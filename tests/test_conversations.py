"""Conversations as data: the formats people hold them in, each malformed kind refused on its line, every arm
asking with the turns, the training labels on assistant tokens only, and leakage on shared beginnings."""

import json

import pytest

import tunewise
from tunewise.arms import arm_class
from tunewise.backends.fake import FakeBackend
from tunewise.errors import DataError, TaskFileError
from tunewise.store import Store
from tunewise.task import validate_task
from tunewise.task.data import find_leakage, load_examples, make_splits

CHATS = [
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "What is its number?"},
     {"role": "user", "content": "It is 1001."}, {"role": "assistant", "content": "Order 1001 shipped on 2 May."}],
    [{"role": "user", "content": "Can I return shoes?"},
     {"role": "assistant", "content": "Returns are accepted within 30 days."}],
]
SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def task_for(path, **extra):
    data = {"instruction": "Answer the customer.", "type": "generation", "data": {"path": str(path)}}
    data.update(extra)
    return validate_task(data)


def loaded(path, **extra):
    return [(e.messages, e.target, e.input) for e in load_examples(task_for(path, **extra))]


def test_openai_sharegpt_parquet_and_datasets_read_the_same(tmp_path):
    openai = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CHATS])
    sharegpt = write_jsonl(tmp_path / "share.jsonl", [
        {"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in c]} for c in CHATS])
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": c} for c in CHATS]), parquet)
    datasets.Dataset.from_list([{"dialogue": c} for c in CHATS]).save_to_disk(str(tmp_path / "ds"))
    expected = loaded(openai)
    assert expected[0][0] == tuple(CHATS[0][:-1]) and expected[0][1] == "Order 1001 shipped on 2 May."
    assert expected[1][2] == "user: Can I return shoes?"  # the transcript: what leakage and reports read
    assert loaded(sharegpt) == loaded(parquet) == expected
    assert loaded(tmp_path / "ds", data={"path": str(tmp_path / "ds"), "messages": "dialogue"}) == expected


def test_openai_content_parts_and_weights(tmp_path):
    chat = [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello.", "weight": 0},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye.", "weight": 1}]
    (example,) = load_examples(task_for(write_jsonl(tmp_path / "c.jsonl", [{"messages": chat}])))
    assert example.messages[0]["content"] == "Hi there" and example.untrained == (1,)


BAD = {
    "not a list": ({"messages": "hello"}, "messages", "not a list of messages"),
    "not a message": ({"messages": ["hello"]}, "messages[0]", "expected a message object"),
    "unknown role": ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "unknown role 'tool'"),
    "sharegpt role": ({"conversations": [{"from": "bot", "value": "x"}]}, "conversations[0].from",
                      "unknown role 'bot'"),
    "empty content": ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}]},
                      "messages[0].content", "empty content"),
    "no final assistant": ({"messages": [{"role": "user", "content": "hi"}]}, "messages[0]",
                           "no final assistant message"),
    "empty conversation": ({"messages": []}, "messages[0]", "no final assistant message"),
    "two system messages": ({"messages": [{"role": "system", "content": "a"}, {"role": "system", "content": "b"},
                                          {"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]},
                            "messages[1].role", "a second system message"),
    "late system message": ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "b"},
                                          {"role": "assistant", "content": "x"}]},
                            "messages[1].role", "must come first"),
    "reply to a reply": ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"},
                                       {"role": "assistant", "content": "b"}]}, "messages[1]",
                         "follows an assistant message"),
    "tool calls": ({"messages": [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "x", "tool_calls": []}]},
                   "messages[1].tool_calls", "is not read"),
    "image part": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                                 {"role": "assistant", "content": "x"}]}, "messages[0].content",
                   "content part of type 'image_url'"),
    "untrained target": ({"messages": [{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": "x", "weight": 0}]},
                         "messages[1].weight", "it is the target"),
    "bad weight": ({"messages": [{"role": "user", "content": "hi", "weight": 0},
                                 {"role": "assistant", "content": "x"}]}, "messages[0].weight", "weight 0"),
}


@pytest.mark.parametrize("row, field, words", BAD.values(), ids=BAD.keys())
def test_each_malformed_conversation_is_one_line_naming_file_line_and_message(tmp_path, row, field, words):
    good = {"messages": CHATS[1]}
    path = write_jsonl(tmp_path / "c.jsonl", [good, good, row])
    with pytest.raises(DataError) as err:
        load_examples(task_for(path))
    line = str(err.value)
    assert line.startswith(f"{path}:3: {field}: ") and words in line and "\n" not in line


def test_rows_without_conversations_or_input_name_data_input(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "hi", "label": "a"}])
    with pytest.raises(TaskFileError, match="data.input: required, but missing"):
        load_examples(task_for(path), task_file="t.yaml")


def test_input_and_messages_together_are_refused(tmp_path):
    with pytest.raises(Exception, match="not both"):
        task_for(tmp_path / "x.jsonl", data={"path": "x.jsonl", "input": "text", "messages": "messages"})


def test_a_conversation_routed_by_a_label_field(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"my parcel {i} is late"}], "team": "shipping"}
            for i in range(3)] + [{"messages": [{"role": "user", "content": f"refund {i}?"}], "team": "billing"}
                                  for i in range(3)]
    task = task_for(write_jsonl(tmp_path / "r.jsonl", rows), type="classification",
                    data={"path": str(tmp_path / "r.jsonl"), "target": "team"})
    examples = load_examples(task)
    assert examples[0].target == "shipping" and examples[0].messages[-1]["role"] == "user"


# ---------------------------------------------------------------- prompts
def support_task(tmp_path, n=12, **extra):
    rows = []
    for i in range(n):
        rows.append({"messages": [{"role": "user", "content": f"Where is my order {i}?"},
                                  {"role": "assistant", "content": "What is its number?"},
                                  {"role": "user", "content": f"It is {1000 + i}."},
                                  {"role": "assistant", "content": f"Order {1000 + i} shipped."}],
                     "customer": f"c{i}"})
    write_jsonl(tmp_path / "chats.jsonl", rows)
    write_jsonl(tmp_path / "facts.jsonl", [{"text": f"Order {1000 + i}: shipped on {i + 1} May."} for i in range(n)])
    data = {"name": "support", "type": "generation", "instruction": "Answer the customer.",
            "context": "An online shop.", "data": {"path": "chats.jsonl"}, "model": "fake",
            "knowledge": {"path": "facts.jsonl", "field": "text"},
            "splits": {"train": 0.5, "dev": 0.25, "test": 0.25, "seed": 0},
            "arms": [{"type": "zero_shot"}, {"type": "structured"}, {"type": "few_shot", "k": 2},
                     {"type": "few_shot", "name": "listed", "k": 1, "layout": "list"},
                     {"type": "retrieval", "passages": 1}]}
    data.update(extra)
    data["base_dir"] = str(tmp_path)
    return validate_task(data)


def prepared(task, name):
    config = next(a for a in task.arms if tunewise.task.arm_name(a) == name)
    arm = arm_class(config.type)(config, task, [], {})
    splits = make_splits(task, load_examples(task))
    arm.prepare(splits)
    return arm, splits


def test_prompt_arms_send_the_system_prompt_then_the_turns(tmp_path):
    task = support_task(tmp_path)
    arm, splits = prepared(task, "structured")
    example = splits.test[0]
    messages = arm.messages(example)
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Answer the customer.")
    assert messages[1:] == list(example.messages)  # the turns as turns, never flattened
    assert arm.prompt_template()[-1]["role"] == "note"


def test_a_conversations_own_system_message_follows_the_arms(tmp_path):
    task = support_task(tmp_path)
    arm, splits = prepared(task, "zero_shot")
    example = splits.test[0]
    own = type(example)(id="x", input="", target=None, line=0,
                        messages=({"role": "system", "content": "Speak French."},) + example.messages)
    messages = arm.messages(own)
    assert messages[0] == {"role": "system", "content": "Answer the customer.\n\nSpeak French."}
    assert [m["role"] for m in messages].count("system") == 1


def test_few_shot_examples_are_whole_conversations(tmp_path):
    task = support_task(tmp_path)
    arm, splits = prepared(task, "few_shot")
    example = splits.test[0]
    messages = arm.messages(example)
    expected = [{"role": "system", "content": arm.system}]
    for shot in arm.shots:
        expected += list(shot.messages) + [{"role": "assistant", "content": shot.target}]
    assert messages == expected + list(example.messages)
    listed, _ = prepared(task, "listed")
    system = listed.messages(example)[0]["content"]
    assert "Examples:" in system and f"assistant: {listed.shots[0].target}" in system
    assert listed.messages(example)[1:] == list(example.messages)


def test_retrieval_queries_the_user_turns_and_puts_passages_in_the_system_message(tmp_path):
    task = support_task(tmp_path)
    arm, splits = prepared(task, "retrieval")
    example = splits.test[0]
    number = example.messages[-1]["content"].split()[-1].rstrip(".")
    assert arm.query(example).splitlines() == [example.messages[0]["content"], example.messages[2]["content"],
                                               example.messages[2]["content"]]  # the last user turn weighs twice
    messages = arm.messages(example)
    assert f"Order {number}:" in messages[0]["content"] and messages[1:] == list(example.messages)


def test_a_fake_run_on_conversations_stores_the_turns_it_sent(tmp_path):
    task = support_task(tmp_path)
    seen = []
    backend = FakeBackend(lambda messages: seen.append(messages) or "Order 1000 shipped.")
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda name: backend)
    assert set(result.summaries) == {"zero_shot", "structured", "few_shot", "listed", "retrieval"}
    assert all(m[-1]["role"] == "user" and len(m) >= 4 for m in seen)
    assert result.summaries["zero_shot"]["metrics"]["exact_match"]["value"] >= 0


def test_leakage_is_a_shared_beginning(tmp_path):
    task = support_task(tmp_path)
    splits = make_splits(task, load_examples(task))
    assert find_leakage(splits).count == 0
    seen = splits.train[0]
    # a test conversation that starts with a whole train conversation, its answer included
    longer = type(seen)(id="t1", input="longer", target="x", line=0, messages=seen.messages + (
        {"role": "assistant", "content": seen.target}, {"role": "user", "content": "Thanks, and order 7?"}))
    # a test conversation that is how a train conversation begins
    shorter = type(seen)(id="t2", input="shorter", target="x", line=0, messages=seen.messages[:1])
    splits.test += [longer, shorter]
    leak = find_leakage(splits)
    assert leak.count == 2 and leak.ids == ["t1", "t2"]


def test_group_by_and_dedupe_work_on_conversations(tmp_path):
    task = support_task(tmp_path, splits={"train": 0.5, "dev": 0.25, "test": 0.25, "group_by": "customer",
                                          "dedupe": True})
    splits = make_splits(task, load_examples(task))
    groups = [{e.group for e in part} for part in (splits.train, splits.dev, splits.test)]
    assert not (groups[0] & groups[2]) and splits.duplicates_dropped == 0


# ---------------------------------------------------------------- training labels
def learned_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != -100])


@pytest.mark.parametrize("loss_on", ["final", "all_assistant"])
def test_training_labels_are_the_assistant_tokens(tmp_path, tiny_model_dir, loss_on):
    from transformers import AutoTokenizer

    from tunewise.backends.chat import ChatFormat
    task = support_task(tmp_path, model=str(tiny_model_dir),
                        arms=[{"type": "lora", "train": {"loss_on": loss_on, "max_length": 512}}])
    arm = arm_class("lora")(task.arms[0], task, [], {})
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    chat = ChatFormat(tokenizer)
    example = load_examples(task)[0]
    built = arm._sft_example(chat, example, arm.settings(10))
    # the sequence is the prompt the arm asks with, then the answer: what inference sees
    assert built.input_ids[:len(chat.encode(arm.prompter.messages(example)))] == chat.encode(
        arm.prompter.messages(example))
    final = f"{example.target}<|im_end|>"
    earlier = "What is its number?<|im_end|>"
    assert learned_text(tokenizer, built) == (final if loss_on == "final" else earlier + final)


def test_weight_zero_messages_are_not_learned(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from tunewise.backends.chat import ChatFormat
    chat_rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello.",
                                                                     "weight": 0},
                               {"role": "user", "content": "order?"}, {"role": "assistant", "content": "Shipped."}]}]
    path = write_jsonl(tmp_path / "w.jsonl", chat_rows)
    task = task_for(path, model=str(tiny_model_dir), arms=[{"type": "lora", "train": {"loss_on": "all_assistant"}}])
    arm = arm_class("lora")(task.arms[0], task, [], {})
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    built = arm._sft_example(ChatFormat(tokenizer), load_examples(task)[0], arm.settings(1))
    assert learned_text(tokenizer, built) == "Shipped.<|im_end|>"


def test_all_assistant_needs_conversations(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "b"}])
    with pytest.raises(Exception, match="all_assistant learns every assistant message"):
        validate_task({"instruction": "i", "type": "generation", "data": {"path": str(path), "input": "text",
                                                                          "target": "label"},
                       "arms": [{"type": "lora", "train": {"loss_on": "all_assistant"}}]})


def test_a_lora_trains_on_conversations_and_answers(tmp_path, tiny_model_dir):
    task = support_task(tmp_path, model=str(tiny_model_dir), generation={"max_tokens": 4},
                        arms=[{"type": "lora", "train": {"epochs": 1, "batch_size": 4, "loss_on": "all_assistant"}},
                              {"type": "hybrid", "name": "lora+retrieval", "tuned": "lora", "prompt": "retrieval"},
                              {"type": "retrieval", "passages": 1}], consistency={"enabled": False})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    assert set(result.summaries) == {"lora", "lora+retrieval", "retrieval"}
    trained = {a["name"]: a["training"] for a in Store(result.store_path).arms(result.run_id)}
    assert trained["lora"]["tokens_seen"] > 0 and trained["lora+retrieval"]["matched"]


def test_the_report_measures_facts_never_seen_in_training_apart(tmp_path):
    rows = []
    for i in range(16):  # policy answers recur across the splits; each order's answer is its own
        reply = "Returns are accepted within 30 days." if i % 2 else f"Order {1000 + i} shipped."
        rows.append({"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant",
                                                                                 "content": reply}]})
    write_jsonl(tmp_path / "c.jsonl", rows)
    task = validate_task({"type": "generation", "instruction": "Answer.", "data": {"path": "c.jsonl"},
                          "model": "fake", "base_dir": str(tmp_path), "metrics": ["token_f1", "exact_match"],
                          "splits": {"train": 0.5, "dev": 0.0, "test": 0.5, "seed": 0},
                          "consistency": {"samples": 2, "max_items": 4}, "arms": [{"type": "zero_shot"}]})
    backend = FakeBackend(lambda messages: "Returns are accepted within 30 days.")
    result = tunewise.run(task, home=tmp_path / "home", progress=False, backend_factory=lambda name: backend)
    groups = result.summaries["zero_shot"]["by_answer"]
    assert groups["seen"]["metrics"]["exact_match"]["value"] == 1.0
    assert groups["unseen"]["metrics"]["exact_match"]["value"] == 0.0
    assert groups["seen"]["n"] + groups["unseen"]["n"] == 8
    rows = {row.label: row.cells[0] for row in result.report.framework.rows}
    assert rows["facts not in training"].startswith(f"token_f1 0.000 (95% CI 0.000–0.000) on the "
                                                    f"{groups['unseen']['n']} test items whose answer no train")
    assert rows["facts not in training"].endswith("; exact_match 0.000 and 1.000")
    assert rows["consistency"].startswith("the same answer in 100% of 2 samples")
    assert "(token F1 1.00 between two samples)" in rows["consistency"]


def test_sample_similarity_is_the_mean_token_f1_of_pairs():
    from tunewise.measure.consistency import similarity
    assert similarity([["red box", "red cup"], ["x", "x", "x"]]) == pytest.approx((0.5 + 1.0) / 2)


def test_searched_and_calibrated_scoring_on_routed_conversations(tmp_path):
    rows = []
    for i in range(24):
        team = "shipping" if i % 2 else "billing"
        ask = f"my parcel {i} is late" if i % 2 else f"I was charged twice for {i}"
        rows.append({"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
                                  {"role": "user", "content": ask}], "team": team})
    write_jsonl(tmp_path / "r.jsonl", rows)
    task = validate_task({"type": "classification", "instruction": "Route the conversation.", "model": "fake",
                          "data": {"path": "r.jsonl", "target": "team"}, "base_dir": str(tmp_path),
                          "consistency": {"enabled": False},
                          "arms": [{"type": "zero_shot", "decoding": "constrained", "calibrate": True},
                                   {"type": "searched", "search": {"trials": 3, "ks": [0, 2]}}]})
    sent = []

    def route(messages):
        sent.append(messages)
        return "shipping" if "parcel" in messages[-1]["content"] else "billing"
    result = tunewise.run(task, home=tmp_path / "home", progress=False,
                          backend_factory=lambda name: FakeBackend(route))
    assert result.summaries["searched"]["metrics"]["accuracy"]["value"] == 1.0
    assert result.summaries["zero_shot"]["n"] == 4
    # every prompt ends with the conversation's turns; the content-free prompt blanks each message
    assert all([m["role"] for m in s[-3:]] == ["user", "assistant", "user"] for s in sent)
    assert any(s[-1]["content"] == "N/A" and s[-2]["content"] == "N/A" for s in sent)
