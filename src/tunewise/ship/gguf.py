"""`export --gguf`: the arm's model as a GGUF file for llama.cpp and Ollama, an Ollama Modelfile carrying the
arm's prompt, and the answers checked through llama.cpp against the ones the run measured.

The conversion is llama.cpp's own `convert_hf_to_gguf.py` (with its `conversion` package and `gguf-py`), read
from llama-cpp-python's source distribution on PyPI once and cached, or from a llama.cpp checkout named by
TUNEWISE_LLAMA_CPP: no converter is written here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..backends.chat import ChatFormat
from ..backends.models import cache_dir
from ..errors import MissingDependencyError, RunError, TunewiseError

LLAMA_CPP_PYTHON = "0.3.36"  # the source distribution whose vendor/llama.cpp holds the converter
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
QUANTIZATIONS = ("f16", "q8_0", "bf16", "f32")


# -- llama.cpp's converter ---------------------------------------------------------------------------------
def converter(log: Callable[[str], None] = lambda m: None) -> Path:
    """The folder holding llama.cpp's convert_hf_to_gguf.py: TUNEWISE_LLAMA_CPP, or the cached copy of the
    one in llama-cpp-python's source distribution (fetched from PyPI once)."""
    own = os.environ.get("TUNEWISE_LLAMA_CPP")
    if own:
        if not (Path(own) / "convert_hf_to_gguf.py").is_file():
            raise TunewiseError("TUNEWISE_LLAMA_CPP names a folder without convert_hf_to_gguf.py (a llama.cpp "
                                "checkout has it at its top)", file=own)
        return Path(own)
    home = cache_dir() / "llama.cpp" / LLAMA_CPP_PYTHON
    if not (home / "convert_hf_to_gguf.py").is_file():
        log(f"fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON}'s source, once) into {home}")
        _fetch_converter(home)
    return home


def _fetch_converter(home: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   "-d", scratch, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
        done = subprocess.run(command, capture_output=True, text=True)
        sdists = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode or not sdists:
            last = (done.stderr.strip().splitlines() or ["no source distribution"])[-1]
            raise RunError(f"cannot fetch llama.cpp's converter ({last}); set TUNEWISE_LLAMA_CPP to a llama.cpp "
                           f"checkout")
        staging = Path(tempfile.mkdtemp(dir=_parent(home), prefix=".llama.cpp-"))
        with tarfile.open(sdists[0]) as archive:
            for member in archive.getmembers():
                inner = member.name.split("/vendor/llama.cpp/", 1)
                if len(inner) == 2 and member.isfile() and inner[1].startswith(CONVERTER_FILES):
                    member.name = inner[1]
                    archive.extract(member, staging, filter="data")
        if home.exists():
            shutil.rmtree(home)
        staging.rename(home)


def _parent(home: Path) -> Path:
    home.parent.mkdir(parents=True, exist_ok=True)
    return home.parent


def convert(model_dir: Path, out: Path, quantization: str, log: Callable[[str], None]) -> None:
    """A Hugging Face model folder to one GGUF file, by llama.cpp's converter, in a process of its own."""
    script = converter(log) / "convert_hf_to_gguf.py"
    log(f"converting to GGUF ({quantization}) with llama.cpp's convert_hf_to_gguf.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(script.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script), str(model_dir), "--outfile", str(out), "--outtype",
                           quantization], capture_output=True, text=True, env=env)
    if done.returncode or not out.is_file():
        lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        hint = "; pip install 'tunewise[gguf]'" if "ModuleNotFoundError" in last else ""
        raise RunError(f"llama.cpp's converter failed: {last}{hint}")


# -- the Ollama Modelfile ----------------------------------------------------------------------------------
@dataclass
class Pieces:
    """The text a chat template writes around each message, read off renderings of marked messages."""
    system_open: str    # before a system message
    system_close: str   # after it
    no_system: str      # what the template writes when there is no system message (a default one, or nothing)
    user_open: str
    user_close: str
    assistant_open: str
    assistant_close: str
    generation: str     # after the last message: where the answer starts

    def render(self, system: str | None, turns: list[dict[str, str]]) -> str:
        """What the Go template below writes for these messages (Ollama's .System and .Messages)."""
        text = f"{self.system_open}{system}{self.system_close}" if system else self.no_system
        for m in turns:
            text += (f"{self.user_open}{m['content']}{self.user_close}" if m["role"] == "user" else
                     f"{self.assistant_open}{m['content']}{self.assistant_close}")
        return text + self.generation

    def go_template(self) -> str:
        return (f"{{{{- if .System }}}}{self.system_open}{{{{ .System }}}}{self.system_close}{{{{ else }}}}"
                f"{self.no_system}{{{{ end }}}}{{{{- range .Messages }}}}{{{{ if eq .Role \"user\" }}}}"
                f"{self.user_open}{{{{ .Content }}}}{self.user_close}{{{{ else if eq .Role \"assistant\" }}}}"
                f"{self.assistant_open}{{{{ .Content }}}}{self.assistant_close}{{{{ end }}}}{{{{ end }}}}"
                f"{self.generation}")


MARKS = ("\x01S\x01", "\x01U\x01", "\x01A\x01", "\x01V\x01")


def template_pieces(chat: ChatFormat) -> Pieces | None:
    """The chat template as pieces around each message, or None when it cannot be written that way."""
    if chat.plain:
        return Pieces("", "\n\n", "", "", "\n\n", "", "\n\n", "")
    s, u, a, v = MARKS
    try:
        full = chat.render([{"role": "system", "content": s}, {"role": "user", "content": u},
                            {"role": "assistant", "content": a}, {"role": "user", "content": v}])
        alone = chat.tokenizer.apply_chat_template([{"role": "user", "content": u}], tokenize=False)
        bare = chat.render([{"role": "user", "content": u}])
    except Exception:  # noqa: BLE001  a template that refuses these messages is not written out
        return None
    parts = _split(full, MARKS)
    user_close = _split(alone, (u,))
    no_user = _split(bare, (u,))
    if parts is None or user_close is None or no_user is None:
        return None
    p0, p1, p2, p3, p4 = parts
    close = user_close[1]
    if not (p2.startswith(close) and p4.startswith(close)):
        return None
    user_open = _common_suffix(_common_suffix(p1, p3), no_user[0])  # what every user message opens with
    return Pieces(system_open=p0, system_close=p1[:len(p1) - len(user_open)],
                  no_system=no_user[0][:len(no_user[0]) - len(user_open)], user_open=user_open, user_close=close,
                  assistant_open=p2[len(close):], assistant_close=p3[:len(p3) - len(user_open)],
                  generation=p4[len(close):])


def _split(text: str, marks: tuple[str, ...]) -> list[str] | None:
    parts = []
    for mark in marks:
        if text.count(mark) != 1:
            return None
        before, text = text.split(mark)
        parts.append(before)
    return parts + [text]


def _common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return a[len(a) - n:]


def modelfile(prompt: list[dict[str, str]], chat: ChatFormat, stops: list[str], generation: dict[str, Any],
              gguf_name: str) -> tuple[str, bool]:
    """The Ollama Modelfile of an arm: FROM the GGUF file, TEMPLATE, SYSTEM, its fixed example turns as MESSAGE
    lines, greedy decoding and the stop tokens. Returns the text and whether the template reproduces the
    arm's rendering exactly (checked on the arm's own prompt)."""
    system = next((m["content"] for m in prompt if m["role"] == "system"), None)
    turns = [m for m in prompt if m["role"] in ("user", "assistant")]
    asked = bool(turns) and prompt[-1] is turns[-1]  # the input's own user turn ends the template
    notes = [m for m in (prompt if asked else prompt[:-1]) if m["role"] == "note"]  # a conversation's own ends it
    examples, dynamic = (turns[:-1] if asked else turns), bool(notes)
    checked = turns if asked else turns + [{"role": "user", "content": "Hello, where is my order?"}]
    pieces = template_pieces(chat)
    exact = pieces is not None and pieces.render(system, checked) == chat.render(
        ([{"role": "system", "content": system}] if system else []) + checked)
    lines = ["# Ollama: ollama create NAME -f Modelfile (in this folder), then ollama run NAME",
             "# written by tunewise export --gguf: the arm's prompt and decoding as the run measured them"]
    if dynamic:
        lines.append("# this arm's prompt also has parts chosen per input (examples or passages): only its fixed "
                     "parts are here")
    lines.append(f"FROM ./{gguf_name}")
    if pieces is not None and exact:
        lines.append(f"TEMPLATE {_quoted(pieces.go_template())}")
    else:
        lines.append("# no TEMPLATE: the model's chat template could not be written as Ollama's exactly; Ollama "
                     "uses the template it detects")
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += [f"MESSAGE {m['role']} {_quoted(m['content'])}" for m in examples]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_predict {generation.get('max_tokens', 32)}"]
    lines += [f"PARAMETER stop {_quoted(s)}" for s in stops]
    return "\n".join(lines) + "\n", exact


def _quoted(value: str) -> str:
    """A Modelfile value: in triple quotes, which keep newlines and quotes (Ollama's parser cannot read a value
    that itself holds three quotes in a row)."""
    if '"""' in value:
        raise TunewiseError('a prompt text holds """, which an Ollama Modelfile cannot carry')
    return f'"""{value}"""'


# -- parity through llama.cpp ------------------------------------------------------------------------------
def llama_answers(gguf: Path, prompts: list[list[int]], max_tokens: int, context: int) -> list[str]:
    """Greedy answers of llama.cpp (llama-cpp-python) on the exported file, from the token ids the run sent."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise MissingDependencyError("checking the GGUF file needs llama-cpp-python: pip install "
                                     "'tunewise[bench]'") from None
    llm = Llama(model_path=str(gguf), n_ctx=context, n_threads=os.cpu_count() or 1, verbose=False, seed=0)
    answers = []
    for ids in prompts:
        out = llm.create_completion(prompt=ids, max_tokens=max_tokens, temperature=0.0, top_k=1)
        answers.append(out["choices"][0]["text"])
    return answers


def llama_cpp_available() -> bool:
    from importlib.util import find_spec
    return find_spec("llama_cpp") is not None
