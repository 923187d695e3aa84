"""A tokenizer's chat template: the one place prompts become model text, for inference and for training."""

from __future__ import annotations

from typing import Any

Message = dict[str, str]


class ChatFormat:
    """Renders chat messages with a tokenizer's template and knows the token that ends a turn."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._end_of_turn: int | None = None
        self._found = False
        self._leading: list[int] | None = None

    @property
    def plain(self) -> bool:
        """No chat template (a base model): messages are rendered as plain text, see `render`."""
        return self.tokenizer.chat_template is None

    def render(self, messages: list[Message]) -> str:
        """The chat-templated prompt text, ending where the assistant's answer starts. Without a chat template,
        the plain rendering: each message's content followed by a blank line, the answer after the last."""
        tok = self.tokenizer
        messages = list(messages)
        if self.plain:
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates reject a system role: fold it into the first user turn
            return tok.apply_chat_template(fold_system(messages), tokenize=False, add_generation_prompt=True)

    def assistant_spans(self, messages: list[Message], indices: list[int]) -> list[tuple[int, int]]:
        """Where the content of each assistant message at `indices` lies in `render(messages)`, as character
        spans: what a conversation's training learns besides its final answer (loss_on: all_assistant).

        Found by rendering the messages before each one: the rendered text must begin the same way whatever
        follows (a template that rewrites earlier turns, dropping a model's reasoning say, cannot be learned
        this way, and is refused rather than mislabeled)."""
        full, spans = self.render(messages), []
        for i in indices:
            start = len(self.render(messages[:i]))
            end = start + len(messages[i]["content"])
            if not full.startswith(self.render(messages[:i])) or full[start:end] != messages[i]["content"]:
                raise ValueError(f"the chat template renders assistant message {i} differently once later turns "
                                 f"follow it, so its tokens cannot be found; use train: {{loss_on: final}}")
            spans.append((start, end))
        return spans

    def encode(self, messages: list[Message]) -> list[int]:
        return self.leading_ids() + self.tokens(self.render(messages))

    def leading_ids(self) -> list[int]:
        """The special tokens the tokenizer puts before a text (a base model's <bos>), sent before a plain
        rendering as the model saw them in training; a chat template writes its own (Gemma's starts with
        {{ bos_token }}), so with one there are none to add."""
        if not self.plain:
            return []
        if self._leading is None:
            tok = self.tokenizer
            text = tok("a", add_special_tokens=False)["input_ids"]
            special = tok("a", add_special_tokens=True)["input_ids"]
            at = next((i for i in range(len(special) - len(text) + 1) if special[i:i + len(text)] == text), 0)
            self._leading = special[:at]
        return list(self._leading)

    def rendering(self) -> str:
        """How prompts are rendered for this model, in words (the report and the model card name it)."""
        if not self.plain:
            return "the tokenizer's chat template"
        bos = self.tokenizer.convert_ids_to_tokens(self.leading_ids())
        start = f"{''.join(bos)} then " if bos else ""
        return f"plain text (no chat template): {start}each message's content followed by a blank line"

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def end_of_turn_id(self) -> int | None:
        """The token the template puts right after an assistant's answer (e.g. <|im_end|>)."""
        if not self._found:
            self._end_of_turn, self._found = self._find_end_of_turn(), True
        return self._end_of_turn

    def _find_end_of_turn(self) -> int | None:
        tok = self.tokenizer
        if tok.chat_template is None:
            return tok.eos_token_id
        messages = [{"role": "user", "content": "x"}]
        prefix = self.render(messages)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": "ANSWER"}], tokenize=False)
        tail = full[len(prefix):].split("ANSWER", 1)[-1] if full.startswith(prefix) else ""
        ids = self.tokens(tail) if tail.strip() else []
        return ids[0] if ids else tok.eos_token_id

    def pad_id(self) -> int:
        tok = self.tokenizer
        if tok.pad_token_id is not None:
            return tok.pad_token_id
        for token in (tok.eos_token_id, self.end_of_turn_id()):
            if token is not None:
                return token
        return 0


def fold_system(messages: list[Message]) -> list[Message]:
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest
