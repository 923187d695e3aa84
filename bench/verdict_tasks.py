"""Three tasks of other shapes than the demo's, to check the verdict (issues 15 and 21) on the embedded model.

    python bench/verdict_tasks.py OUT_DIR            # writes the task files and their data
    tunewise run OUT_DIR/extraction/task.yaml        # then run each one

- extraction: name and city from order messages (generated from fixed name and place lists), metrics
  json_valid and key_accuracy, a target on key accuracy that few-shot prompting misses;
- support: support requests of 150 problems, some asked up to 12 times in the same words (heavy duplication),
  routed to a team; task.yaml splits at random (leaky), grouped.yaml keeps each problem in one split;
- facts: "what is the mean rating of word X" from vaderSentiment's lexicon, generation with token F1 and a
  target of 0.5; the test words' ratings are not in training, so no arm can know them (task.yaml), unless
  a retrieval arm finds them in the lexicon, given as a knowledge source (retrieval.yaml).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

FIRST = ["Maria", "James", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Tom", "Sofia", "Kwame", "Elena", "Ravi",
         "Hannah", "Mateo", "Yuki", "Fatima", "Lucas", "Ingrid", "Diego", "Chloe", "Ahmed", "Nora", "Felix", "Zara"]
LAST = ["Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Silva", "Sharma", "Okafor", "Rossi", "Mensah", "Novak",
        "Iyer", "Schmidt", "Garcia", "Sato", "Khan", "Martin", "Larsen", "Torres", "Dubois", "Ali", "Walsh"]
CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Greenville", "Madison", "Oakridge", "Ashford",
          "Brookfield", "Clayton", "Dover", "Elmwood", "Franklin", "Georgetown", "Hillsboro", "Kingston"]
STREETS = ["Oak Street", "Maple Avenue", "Pine Road", "Cedar Lane", "Elm Drive", "Birch Way", "Mill Road"]
MESSAGES = [
    "Hi, this is {name}. Please ship my order to {number} {street}, {city}.",
    "Order for {name}: deliver to {number} {street} in {city}, thanks!",
    "Can you send the package to {city}? Address: {number} {street}. Name: {name}.",
    "{name} here - my new address is {number} {street}, {city}. Please update the shipment.",
    "Please deliver to {name}, {number} {street}, {city}. Leave it at the door.",
]
TEAMS = {"billing": ["I was charged twice for {thing}", "refund for {thing} has not arrived",
                     "my invoice for {thing} shows the wrong amount"],
         "technical": ["{thing} crashes when I open it", "{thing} shows error {code} on start",
                       "{thing} will not sync since the update"],
         "account": ["I cannot log in to {thing}", "please reset my password for {thing}",
                     "how do I delete my account on {thing}"]}
THINGS = ["the mobile app", "my subscription", "the desktop client", "the web dashboard", "the printer driver",
          "the backup service", "my family plan", "the photo editor"]


def extraction(out: Path, n: int = 500) -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        name, city = f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(CITIES)
        text = rng.choice(MESSAGES).format(name=name, city=city, number=rng.randint(1, 299), street=rng.choice(STREETS))
        rows.append({"message": text, "fields": {"name": name, "city": city}})
    write(out / "extraction", rows, """\
name: order-addresses
type: extraction
json_keys: [name, city]
data: {path: data.jsonl, input: message, target: fields}
instruction: Extract the customer's name and the city of the delivery address from the order message.
output_format: 'Answer with one JSON object: {"name": "...", "city": "..."}'
metrics: [json_valid, key_accuracy]
target: {metric: key_accuracy, value: 0.9}
splits: {train: 0.6, dev: 0.1, test: 0.3, seed: 0, max_train: 300, max_dev: 50, max_test: 150}
generation: {max_tokens: 40}
consistency: {enabled: false}
arms:
  - {type: zero_shot}
  - {type: few_shot, k: 4}
  - {type: lora, r: 8, alpha: 16, train: {epochs: 1, batch_size: 8, learning_rate: 0.001}}
  - {type: hybrid, tuned: lora, prompt: zero_shot}
""")


def support(out: Path, problems: int = 150) -> None:
    rng = random.Random(1)
    rows = []
    for p in range(problems):
        team = rng.choice(sorted(TEAMS))
        text = rng.choice(TEAMS[team]).format(thing=rng.choice(THINGS), code=rng.randint(100, 999))
        text += f" (customer {1000 + p})"  # each problem in its own words
        repeats = rng.choice([1] * 6 + [2, 3, 10])  # a few problems asked again and again, most once
        rows += [{"request": text, "team": team, "problem": f"p{p}"} for _ in range(repeats)]
    rng.shuffle(rows)
    body = """\
type: classification
labels: [account, billing, technical]
data: {path: data.jsonl, input: request, target: team}
instruction: Route the support request to the team that handles it.
context: Billing handles charges, refunds and invoices; technical handles crashes, errors and sync;
  account handles logins, passwords and deleting accounts.
consistency: {enabled: false}
arms:
  - {type: zero_shot, decoding: constrained}
  - {type: few_shot, k: 6, decoding: constrained}
  - {type: lora, decoding: constrained, train: {epochs: 2, batch_size: 8, learning_rate: 0.001}}
"""
    write(out / "support", rows, "name: support-routing\nsplits: {train: 0.6, dev: 0.2, test: 0.2, seed: 0}\n" + body)
    (out / "support" / "grouped.yaml").write_text(
        "name: support-routing-grouped\nsplits: {train: 0.6, dev: 0.2, test: 0.2, seed: 0, group_by: problem}\n"
        + body)


def facts(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tunewise.demo import word_rows
    rng = random.Random(2)
    rows = rng.sample(word_rows(), 400)
    data = [{"question": f"What is the mean rating of the word '{r['word']}' in the VADER sentiment lexicon, "
                         f"on its scale from -4 to 4?", "answer": f"{r['rating']:.1f}"} for r in rows]
    knowledge = [{"text": f"In the VADER lexicon the word '{r['word']}' has a mean rating of {r['rating']:.1f}."}
                 for r in word_rows()]
    write(out / "facts", data, FACTS)
    (out / "facts" / "lexicon.jsonl").write_text("".join(json.dumps(k) + "\n" for k in knowledge))
    (out / "facts" / "retrieval.yaml").write_text(
        FACTS.replace("name: lexicon-facts", "name: lexicon-facts-retrieval")
        + "  - {type: retrieval, passages: 3, k: 4}\nknowledge: {path: lexicon.jsonl, field: text}\n")


FACTS = """\
name: lexicon-facts
type: generation
data: {path: data.jsonl, input: question, target: answer}
instruction: Answer the question with the number only.
metrics: [exact_match, token_f1]
target: {metric: token_f1, value: 0.5}
splits: {train: 0.6, dev: 0.1, test: 0.3, seed: 0, max_train: 160, max_dev: 40, max_test: 120}
generation: {max_tokens: 8}
consistency: {enabled: false}
learning_curve: {arm: lora, sizes: [16, 40, 80, all], ks: [1]}
arms:
  - {type: zero_shot}
  - {type: few_shot, k: 8}
  - {type: lora, r: 8, alpha: 16, train: {epochs: 2, batch_size: 8, learning_rate: 0.001}}
"""


def write(directory: Path, rows: list[dict], task: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "task.yaml").write_text(task)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "verdict-tasks")
    extraction(target)
    support(target)
    facts(target)
    print(f"wrote {target}/extraction, {target}/support (task.yaml, grouped.yaml) and {target}/facts")
