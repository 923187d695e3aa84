"""export --gguf: the Ollama Modelfile (its template rebuilt from the chat template, checked against Ollama's
Modelfile grammar) and, where llama.cpp's converter and llama-cpp-python are here, the file and its parity."""

import os
from pathlib import Path

import pytest

from tunewise.backends.chat import ChatFormat
from tunewise.ship.gguf import modelfile, template_pieces

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief.\nVery."}, {"role": "user", "content": "Word: happy"}],
    [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Word: a"},
     {"role": "assistant", "content": "positive"}, {"role": "user", "content": "Word: b"}],
    [{"role": "user", "content": "Where is it?"}, {"role": "assistant", "content": "Which order?"},
     {"role": "user", "content": "1001"}],
]


def rendered_by_pieces(pieces, messages):
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    return pieces.render(system, [m for m in messages if m["role"] != "system"])


def test_the_template_pieces_render_as_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    pieces = template_pieces(chat)
    for messages in CONVERSATIONS:
        assert rendered_by_pieces(pieces, messages) == chat.render(messages)
    assert pieces.generation == "<|im_start|>assistant\n"


@pytest.mark.slow
def test_smollm2s_template_with_its_default_system_message():
    """SmolLM2's template writes a system message of its own when none is given: the pieces keep it."""
    from transformers import AutoTokenizer

    from tunewise.backends.models import embedded_gguf
    gguf = embedded_gguf()
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name))
    pieces = template_pieces(chat)
    assert "SmolLM" in pieces.no_system
    for messages in CONVERSATIONS:
        assert rendered_by_pieces(pieces, messages) == chat.render(messages)


def test_the_plain_rendering_as_pieces(tiny_model_dir):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.chat_template = None
    chat = ChatFormat(tokenizer)
    pieces = template_pieces(chat)
    for messages in CONVERSATIONS:
        assert rendered_by_pieces(pieces, messages) == chat.render(messages)


# ---------------------------------------------------------------- Ollama's Modelfile grammar
COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter",
            "message", "requires"}


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """Commands as Ollama's parser reads them (ollama/parser/parser.go, ParseFile): a name of letters, a
    space, a value that is bare, "quoted" or \"\"\"triple-quoted\"\"\" (newlines kept inside); PARAMETER takes a
    name; MESSAGE a role of system, user or assistant; # starts a comment; a FROM line is required."""
    commands, i = [], 0
    while i < len(text):
        if text[i] in " \t\r\n":
            i += 1
            continue
        if text[i] == "#":
            i = text.find("\n", i) + 1 or len(text)
            continue
        name_end = i
        while name_end < len(text) and text[name_end].isalpha():
            name_end += 1
        name = text[i:name_end].lower()
        assert name in COMMANDS and text[name_end] in " \t", f"invalid command at {text[i:i + 20]!r}"
        i = name_end + 1
        if name in ("parameter", "message"):
            key_end = text.index(" ", i)
            key = text[i:key_end]
            if name == "message":
                assert key in ("system", "user", "assistant"), f"invalid message role {key!r}"
            i = key_end + 1
            name = f"{name} {key}"
        if text.startswith('"""', i):
            end = text.index('"""', i + 3)
            value, i = text[i + 3:end], end + 3
        elif text.startswith('"', i):
            end = text.index('"', i + 1)
            value, i = text[i + 1:end], end + 1
        else:
            end = min(p for p in (text.find("\n", i), len(text)) if p >= 0)
            value, i = text[i:end].strip(), end
        commands.append((name, value))
    assert any(name == "from" for name, _ in commands), "no FROM line"
    return commands


def test_the_modelfile_carries_the_arms_prompt_in_ollamas_grammar(tiny_model_dir):
    from transformers import AutoTokenizer
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    prompt = [{"role": "system", "content": 'Classify the word.\n\nOutput format: "positive" or "negative".'},
              {"role": "user", "content": "Word: joy"}, {"role": "assistant", "content": "positive"},
              {"role": "user", "content": "{input}"}]
    text, exact = modelfile(prompt, chat, ["<|im_end|>"], {"max_tokens": 8}, "model.gguf")
    commands = parse_modelfile(text)
    assert exact
    assert ("from", "./model.gguf") in commands
    assert ("system", prompt[0]["content"]) in commands
    assert [c for c in commands if c[0].startswith("message")] == [("message user", "Word: joy"),
                                                                    ("message assistant", "positive")]
    assert ("parameter temperature", "0") in commands and ("parameter stop", "<|im_end|>") in commands
    template = dict(commands)["template"]
    assert "{{ .System }}" in template and '{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}' in template


def test_a_prompt_holding_three_quotes_is_refused(tiny_model_dir):
    from transformers import AutoTokenizer

    from tunewise.errors import TunewiseError
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    with pytest.raises(TunewiseError, match="cannot carry"):
        modelfile([{"role": "system", "content": 'say """'}, {"role": "user", "content": "{input}"}], chat, [],
                  {}, "model.gguf")


# ---------------------------------------------------------------- the file itself, where the tools are here
def converter_here() -> bool:
    from tunewise.backends.models import cache_dir
    from tunewise.ship.gguf import LLAMA_CPP_PYTHON
    own = os.environ.get("TUNEWISE_LLAMA_CPP")
    return bool(own) or (cache_dir() / "llama.cpp" / LLAMA_CPP_PYTHON / "convert_hf_to_gguf.py").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not converter_here(), reason="llama.cpp's converter is not cached here (export --gguf fetches "
                                                  "it once from PyPI; tests stay offline)")
def test_export_gguf_writes_a_file_llama_cpp_reads(tmp_path):
    """The embedded model (llama.cpp's converter knows its tokenizer; a random fixture's it does not) asked by
    a zero-shot arm, exported with --gguf: the file's architecture, the Modelfile, the answers through llama.cpp."""
    import json

    import tunewise
    from tunewise.backends.models import gguf_architecture
    from tunewise.ship.bundle import read_bundle
    from tunewise.ship.export import export
    from tunewise.store import Store
    from tunewise.task import validate_task
    rows = [{"word": w, "label": lab} for w, lab in [("happy", "positive"), ("awful", "negative")] * 5]
    (tmp_path / "w.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = validate_task({"type": "classification", "instruction": "Is the word positive or negative?",
                          "data": {"path": "w.jsonl", "input": "Word: {word}", "target": "label"},
                          "base_dir": str(tmp_path), "consistency": {"enabled": False}, "generation": {"max_tokens": 3},
                          "splits": {"train": 0.5, "dev": 0.2, "test": 0.3, "seed": 0}, "arms": [{"type": "zero_shot"}]})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    out = export(Store(result.store_path), result.run_id, tmp_path / "bundle", "zero_shot", gguf="q8_0")
    assert gguf_architecture(Path(out) / "model.gguf") == "llama"
    manifest, _ = read_bundle(Path(out))
    assert manifest.gguf["quantization"] == "q8_0" and manifest.gguf["template_exact"]
    parse_modelfile((Path(out) / "Modelfile").read_text())
    parity = manifest.gguf["parity"]
    if parity["checked"]:  # llama-cpp-python installed: the answers from the same tokens
        assert parity["items"] == manifest.n_test and parity["same_answers"] >= parity["items"] - 1


def test_a_conversation_arms_modelfile(tiny_model_dir):
    """A conversation task's template ends with a note, not an input turn: every turn before it is an example."""
    from transformers import AutoTokenizer
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    prompt = [{"role": "note", "content": "the conversation's messages"}]
    text, exact = modelfile(prompt, chat, ["<|im_end|>"], {"max_tokens": 8}, "model.gguf")
    commands = parse_modelfile(text)
    assert exact and not [c for c in commands if c[0].startswith("message")]
    assert "chosen per input" not in text  # the conversation is the input, not a part chosen for it
