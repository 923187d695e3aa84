"""The HTML report as a person sees it: rendered by headless Chromium, with no console errors."""

import os
import re
import shutil
import subprocess

import pytest

import tunewise
from tunewise.task import validate_task

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if BROWSER is None and os.environ.get("TUNEWISE_REQUIRE_BROWSER"):
    raise RuntimeError("TUNEWISE_REQUIRE_BROWSER is set but no Chromium was found")
needs_browser = pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")


def render(path, tmp_path, screenshot=None):
    """The DOM after scripts ran, and the console errors Chromium logged."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=3000"]
    if screenshot:
        subprocess.run(args + ["--window-size=1300,2600", f"--screenshot={screenshot}", path.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    done = subprocess.run(args + ["--dump-dom", path.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines()
              if ":CONSOLE" in line and ("Uncaught" in line or "ERROR" in line or "Error" in line)]
    return done.stdout, errors


@needs_browser
def test_the_console_check_catches_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p id=x>hi</p><script>undefinedFunction();</script></body></html>")
    dom, errors = render(page, tmp_path)
    assert 'id="x"' in dom and errors, "a page with a script error must be reported"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir):
    """Every kind of arm, a learning curve and consistency, on the tiny model."""
    tmp = tmp_path_factory.mktemp("report")
    words = [f"w{i}" for i in range(60)]
    (tmp / "words.jsonl").write_text("".join(
        f'{{"word": "{w}", "label": "{"positive" if i % 2 else "negative"}"}}\n' for i, w in enumerate(words)))
    task = validate_task({
        "name": "tiny-words", "instruction": "Classify the sentiment of the word.", "model": str(tiny_model_dir),
        "data": {"path": str(tmp / "words.jsonl"), "input": "Word: {word}", "target": "label"},
        "splits": {"train": 0.5, "dev": 0.2, "test": 0.3, "seed": 0}, "batch_size": 8,
        "generation": {"max_tokens": 4}, "target": {"metric": "accuracy", "value": 0.9},
        "consistency": {"samples": 3, "max_items": 8},
        "arms": [{"type": "zero_shot"}, {"type": "structured", "decoding": "constrained"},
                 {"type": "few_shot", "k": 2, "decoding": "constrained"},
                 {"type": "lora", "decoding": "constrained", "train": {"epochs": 2, "batch_size": 8,
                                                                       "learning_rate": 0.01}},
                 {"type": "hybrid", "tuned": "lora", "prompt": "structured", "decoding": "constrained"}],
        "learning_curve": {"sizes": [8, "all"], "ks": [1], "min_passes": 16}})
    return tunewise.run(task, home=tmp / "home", progress=False)


def test_report_json_holds_the_decision_tests_costs_and_consistency(full_run):
    import json
    report = json.loads(full_run.report_paths["json"].read_text())
    names = {a["name"] for a in report["arms"]}
    assert {"zero_shot", "structured", "few_shot", "lora", "hybrid", "lora@8", "few_shot@k1"} <= names
    decision = report["decision"]
    assert (decision["recommended"] or decision["closest"]) in names and decision["reasons"]
    assert decision["metric"] == "accuracy" and decision["metric_why"] == "the target's metric"
    assert [row["label"] for row in report["framework"]["rows"]] == [
        "method", "quality", "consistency", "effort", "cost", "speed", "flexibility", "data required", "use case"]
    consistency = report["framework"]["rows"][2]["cells"]
    effort = dict(zip(report["framework"]["columns"], report["framework"]["rows"][3]["cells"]))
    for column, cell in effort.items():  # hand-written prompts; trainings with fixed settings, dev-selected
        if column.startswith("prompting: "):
            assert cell.startswith("none: the prompt as written"), cell
        if column.startswith(("fine-tuning: ", "hybrid: ")):
            assert cell.startswith("one training with fixed settings, ") and " dev answers, " in cell, cell
    assert all(cell.startswith("the same answer in ") or cell == "not measured" for cell in consistency)
    assert report["framework"]["columns"][:2] == ["prompting: zero_shot", "fine-tuning: lora"] or \
        report["framework"]["columns"][0].startswith("prompting: ")
    assert len(report["comparisons"]) == 10  # 5 main arms, every pair
    assert all(c["p_holm"] >= c["p"] for c in report["comparisons"])
    assert report["costs"]["lora"]["one_time"] > 0 and report["costs"]["zero_shot"]["one_time"] == 0
    lora = next(a for a in report["arms"] if a["name"] == "lora")
    consistency = lora["summary"]["consistency"]
    assert consistency["paraphrase_agreement"] is None  # asked with the bare input
    assert 0 < consistency["sample_agreement"] <= 1
    structured = next(a for a in report["arms"] if a["name"] == "structured")
    assert 0 < structured["summary"]["consistency"]["paraphrase_agreement"] <= 1
    assert [p["examples"] for p in report["data_needs"]["fine_tuning"]] == [8, 30]
    assert report["confusion"]["lora"]["labels"] == ["negative", "positive"]
    [parts] = report["contributions"]
    assert parts["hybrid"] == "hybrid" and parts["training"] == "matched"
    assert [(p["role"], p["arm"]) for p in parts["parts"]] == [("prompt alone", "structured"), ("weights alone", "lora")]
    assert [p["k"] for p in report["data_needs"]["few_shot"]] == [1, 2] and report["data_needs"]["few_shot"][0]["draws"] == 3


@needs_browser
def test_report_renders_in_chromium_without_console_errors(full_run, tmp_path):
    html = full_run.report_paths["html"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html.read_text())  # nothing to fetch
    screenshot = tmp_path / "report.png"
    dom, errors = render(html, tmp_path, screenshot=screenshot)
    assert errors == []
    assert 'id="comparison"' in dom and 'id="recommendation"' in dom and 'id="framework"' in dom
    assert "Decided on <b>accuracy</b>" in dom and 'id="parts-hybrid"' in dom
    rows = re.findall(r"<tr[^>]*>\s*<td>(\w[\w@+]*)</td>", dom.split('id="comparison"')[1].split("</table>")[0])
    assert rows == ["zero_shot", "structured", "few_shot", "lora", "hybrid"]
    assert dom.count("<svg") >= 4  # quality/cost, fine-tuning curve, few-shot curve, training loss
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
