"""A model without a chat template (a base model) is asked in a plain rendering with the special tokens its
tokenizer adds (<bos>), in evaluation and training alike, and the run says so; a GGUF file is a model."""

import json

import pytest

import tunewise
from conftest import CORPUS
from tunewise.arms import arm_class
from tunewise.backends.chat import ChatFormat
from tunewise.task import validate_task
from tunewise.task.data import load_examples


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory):
    """A tiny random Llama whose tokenizer puts <s> before every text and has no chat template."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-base")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<s>", "</s>"])
    bpe._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1, tie_word_embeddings=True,
                         initializer_range=0.5)  # large weights: varied, readable random outputs
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def words_task(tmp_path, model, arms):
    rows = [{"word": w, "label": lab} for w, lab in [("happy", "positive"), ("sad", "negative")] * 8]
    (tmp_path / "w.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return validate_task({"type": "classification", "instruction": "Classify the sentiment of the word.",
                          "data": {"path": "w.jsonl", "input": "Word: {word}", "target": "label"},
                          "model": str(model), "base_dir": str(tmp_path), "consistency": {"enabled": False},
                          "splits": {"train": 0.5, "dev": 0.25, "test": 0.25, "seed": 0},
                          "generation": {"max_tokens": 2}, "arms": arms})


def test_the_plain_rendering_starts_with_the_tokenizers_bos(base_model_dir):
    from transformers import AutoTokenizer
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(base_model_dir)))
    messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Word: happy"}]
    ids = chat.encode(messages)
    assert chat.plain and chat.leading_ids() == [0]
    assert chat.tokenizer.decode(ids) == "<s>Classify.\n\nWord: happy\n\n"
    assert chat.rendering() == "plain text (no chat template): <s> then each message's content followed by a blank line"


def test_a_chat_template_writes_its_own_special_tokens(tiny_model_dir):
    from transformers import AutoTokenizer
    chat = ChatFormat(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    assert not chat.plain and chat.leading_ids() == [] and chat.rendering() == "the tokenizer's chat template"


def test_training_sequences_start_with_bos_unlabeled(tmp_path, base_model_dir):
    from transformers import AutoTokenizer
    task = words_task(tmp_path, base_model_dir, [{"type": "lora"}])
    arm = arm_class("lora")(task.arms[0], task, ["negative", "positive"], {})
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    example = load_examples(task)[0]
    built = arm._sft_example(ChatFormat(tokenizer), example, arm.settings(8))
    assert built.input_ids[0] == 0 and built.labels[0] == -100
    assert tokenizer.decode(built.input_ids) == f"<s>Word: happy\n\n{example.target}</s>"
    assert tokenizer.decode([t for t, label in zip(built.input_ids, built.labels) if label != -100]) == \
        f"{example.target}</s>"


def test_evaluation_sends_bos_and_the_run_names_the_rendering(tmp_path, base_model_dir):
    from tunewise.backends.local import LocalBackend
    from tunewise.store import Store
    backend = LocalBackend(str(base_model_dir), device="cpu")
    assert backend.encode([{"role": "user", "content": "Word: sad"}])[0] == 0
    task = words_task(tmp_path, base_model_dir, [{"type": "zero_shot"}])
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    warnings = Store(result.store_path).get_run(result.run_id)["info"]["warnings"]
    assert any("has no chat template (a base model): prompts are rendered as plain text" in w for w in warnings)


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    from tunewise.backends.models import model_problem
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file")
    assert model_problem(str(fake)) == f"{str(fake)!r} is not a GGUF file (it does not start with the GGUF " \
                                       f"magic bytes)"


def test_a_gguf_of_an_architecture_transformers_cannot_read_names_it(tmp_path):
    import gguf

    from tunewise.backends.models import gguf_header, model_problem
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv7")
    writer.add_context_length(4096)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert gguf_header(path, ("general.architecture", "rwkv7.context_length")) == {
        "general.architecture": "rwkv7", "rwkv7.context_length": 4096}
    problem = model_problem(str(path))
    assert problem.startswith("odd.gguf: its architecture 'rwkv7' is not one transformers reads from GGUF")


# ---------------------------------------------------------------- the model card's code, run as written
def card_code(bundle) -> str:
    """The card's transformers block, as a user would copy it."""
    card = (bundle / "README.md").read_text()
    blocks = card.split("```python\n")[1:]
    code = next(b.split("```")[0] for b in blocks if "from transformers import" in b)
    return code.replace("BUNDLE", str(bundle))


def run_card(bundle, text: str) -> str:
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(card_code(bundle).replace('"YOUR INPUT"', repr(text)), {})  # noqa: S102
    return out.getvalue().strip()


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat template", "plain rendering"])
def test_the_cards_code_reproduces_predict(tmp_path, tiny_model_dir, base_model_dir, chat_template):
    from tunewise.ship.bundle import Bundle
    from tunewise.ship.export import export
    from tunewise.store import Store
    model = tiny_model_dir if chat_template else base_model_dir
    task = words_task(tmp_path, model, [{"type": "structured"},
                                        {"type": "lora", "train": {"epochs": 1, "learning_rate": 0.01}}])
    task = task.model_copy(update={"generation": task.generation.model_copy(update={"max_tokens": 5})})
    result = tunewise.run(task, home=tmp_path / "home", progress=False)
    store = Store(result.store_path)
    said = []
    for arm in ("structured", "lora"):
        out = tmp_path / f"bundle-{arm}"
        export(store, result.run_id, out, arm)
        bundle = Bundle.load(out, device="cpu")
        examples = bundle.examples(["Word: happy", "Word: gloomy", "Word: the quick brown fox", "Word: 0123"])
        answers = [p.raw for p in bundle.answer(examples)]
        assert [run_card(out, e.input) for e in examples] == answers
        said += answers
        card = (out / "README.md").read_text()
        assert str(tmp_path / "home") not in card and ".cache" not in card  # no path of this machine
        if arm == "lora":
            config = json.loads((out / "adapter" / "adapter_config.json").read_text())
            assert config["base_model_name_or_path"] == str(model)
    assert any(said)  # the comparison is of answers, not of empty texts alone


def test_similar_examples_are_the_whole_pools_most_similar_without_the_item_itself():
    """`selection: similar` takes the k best of the pool by trigram overlap (ties by pool order), leaving out the
    pool's copies of the item, as sorting the whole pool for each item did; it just does not sort it."""
    import random as stdlib_random

    from tunewise.arms import build
    from tunewise.arms.prompt import _ngrams, _overlap
    from tunewise.task import validate_task
    from tunewise.task.data import Example, Splits, normalize
    rng = stdlib_random.Random(0)
    words = ["good", "bad", "goodness", "badly", "great", "grate", "sad", "glad", "gladly", "mad"]
    pool = [Example(id=str(i), input=f"Word: {rng.choice(words)}{rng.choice(['', 's', 'ly'])}", target="x", line=i)
            for i in range(300)]
    task = validate_task({"instruction": "Classify.", "data": {"path": "d.jsonl", "input": "w", "target": "y"},
                          "arms": [{"type": "few_shot", "k": 5, "selection": "similar"}]})
    arm = build(task.arms[0], task, ["x"], {})
    arm.prepare(Splits(pool, [], []))
    for item in pool[:40] + [Example(id="new", input="Word: gladness", target="x", line=0)]:
        query, key = _ngrams(item.input), normalize(item.input)
        ranked = sorted(range(len(pool)), key=lambda i: (-_overlap(query, _ngrams(pool[i].input)), i))
        expected = [pool[i] for i in ranked if normalize(pool[i].input) != key][:5]
        assert arm.shots_for(item) == list(reversed(expected))
