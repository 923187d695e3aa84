"""Task shapes other than the demo's, for the engine benchmarks (issue 14): their data and task files.

    python bench/shapes.py OUT_DIR        # writes OUT_DIR/{routing,extraction,answers}/{data.jsonl,task.yaml}

The text is generated from fixed word lists with a seeded random generator: for speed the words do not
matter, the shape does (prompt lengths, label token counts, output lengths), and generated text keeps
the benchmark offline and reproducible.
- routing: messages of 5-15 words routed to one of 14 topics whose labels are 1-4 tokens of SmolLM2's
  tokenizer, two of them sharing a first token ("science" / "science fiction"); 400 train, 70 dev, 196 test;
- extraction: order messages of about 40 words, answered with a JSON object of six fields (about 40
  output tokens), `max_tokens` 96;
- answers: a question answered in one sentence (`max_tokens` 48).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TOPICS = {
    "billing": ["invoice", "charged", "payment", "card", "refund", "fee", "bill", "overcharged", "receipt"],
    "technical support": ["crash", "error", "bug", "install", "update", "freezes", "driver", "screen", "reboot"],
    "account access": ["login", "password", "locked", "username", "sign in", "two-factor", "email code"],
    "shipping": ["delivery", "courier", "tracking", "parcel", "shipped", "late", "address", "warehouse"],
    "returns and refunds": ["return", "exchange", "damaged", "broken", "wrong size", "money back", "label"],
    "science": ["experiment", "physics", "chemistry", "molecule", "telescope", "theory", "laboratory"],
    "science fiction": ["spaceship", "alien", "robot", "time travel", "galaxy", "novel", "starship"],
    "sports": ["match", "goal", "team", "league", "coach", "tennis", "football", "score", "season"],
    "politics": ["election", "senate", "vote", "policy", "minister", "parliament", "campaign", "law"],
    "music": ["concert", "album", "guitar", "song", "band", "playlist", "lyrics", "singer", "tour"],
    "weather": ["rain", "storm", "forecast", "sunny", "snow", "temperature", "wind", "humid", "cloudy"],
    "gift cards": ["gift card", "voucher", "balance", "redeem", "code", "present", "birthday", "coupon"],
    "travel booking": ["flight", "hotel", "booking", "reservation", "airport", "ticket", "itinerary"],
    "job applications": ["resume", "interview", "position", "hiring", "salary", "recruiter", "offer"],
}
FILLER = ["please", "today", "my", "the", "about", "again", "really", "need", "help", "with", "this", "last",
          "week", "I", "we", "just", "still", "can", "you", "tell", "me", "new", "how", "what", "is", "our",
          "friend", "said", "there", "was", "a", "very", "quick", "question", "on", "for", "it", "seems"]
NAMES = ["Maria Lopez", "James Smith", "Aiko Tanaka", "Omar Haddad", "Lena Berg", "Carlos Silva", "Priya Sharma",
         "Tom Okafor", "Sofia Rossi", "Kwame Mensah", "Elena Novak", "Ravi Iyer", "Hannah Schmidt"]
CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Greenville", "Madison", "Oakridge", "Ashford",
          "Brookfield", "Clayton", "Dover", "Elmwood", "Franklin", "Georgetown", "Hillsboro", "Kingston"]
STREETS = ["Oak Street", "Maple Avenue", "Pine Road", "Cedar Lane", "Elm Drive", "Birch Way", "Mill Road"]
PRODUCTS = ["desk lamp", "coffee grinder", "rain jacket", "garden hose", "office chair", "phone case",
            "water bottle", "yoga mat", "bread knife", "wool blanket", "travel mug", "bike helmet"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def routing_text(rng: random.Random, topic: str) -> str:
    words = rng.sample(TOPICS[topic], rng.randint(2, 3)) + rng.sample(FILLER, rng.randint(3, 10))
    rng.shuffle(words)
    return " ".join(words).capitalize() + rng.choice([".", "?", "!"])


def routing(out: Path) -> None:
    rng = random.Random(14)
    topics = sorted(TOPICS)
    rows = [{"text": routing_text(rng, topic), "topic": topic}
            for topic in (topics[i % len(topics)] for i in range(670))]
    rng.shuffle(rows)
    labels = ", ".join(topics)
    write(out / "routing", rows, f"""\
name: message-routing
type: classification
labels: [{labels}]
data: {{path: data.jsonl, input: "{{text}}", target: topic}}
instruction: Route the customer message to the topic it is about.
context: Messages arrive at a help desk that covers shopping, media and travel.
constraints: [Answer with the topic only.]
splits: {{train: 0.6, dev: 0.1, test: 0.3, seed: 0, max_train: 400, max_dev: 70, max_test: 200}}
generation: {{max_tokens: 8}}
arms:
  - {{type: zero_shot, decoding: constrained}}
  - {{type: structured, decoding: constrained}}
  - {{type: few_shot, k: 8, selection: similar, decoding: constrained}}
  - {{type: lora, r: 8, alpha: 16, train: {{epochs: 1, batch_size: 8, learning_rate: 0.001}}}}
  - {{type: hybrid, tuned: lora, prompt: structured, decoding: constrained}}
""")


def order_text(rng: random.Random, order: dict) -> str:
    parts = [f"Hello, this is {order['name']} writing on {order['day']}.",
             f"I would like to order {order['quantity']} of the {order['product']} from your spring catalogue,",
             f"delivered to {order['street']} in {order['city']} please.",
             rng.choice(["My neighbour recommended your shop and I have been happy with every order so far.",
                         "Please wrap it carefully because the last parcel arrived with a dent in the box.",
                         "If it is out of stock, let me know by email and I will wait for the next batch."])]
    return " ".join(parts)


def extraction(out: Path, n: int = 500) -> None:
    rng = random.Random(3)
    rows = []
    for _ in range(n):
        order = {"name": rng.choice(NAMES), "city": rng.choice(CITIES), "street": rng.choice(STREETS),
                 "product": rng.choice(PRODUCTS), "quantity": rng.randint(1, 9), "day": rng.choice(DAYS)}
        rows.append({"message": order_text(rng, order), "order": order})
    write(out / "extraction", rows, """\
name: order-extraction
type: extraction
json_keys: [name, city, street, product, quantity, day]
data: {path: data.jsonl, input: message, target: order}
instruction: Extract the order's fields from the customer's message.
output_format: 'One JSON object: {"name": "...", "city": "...", "street": "...", "product": "...", "quantity": 1, "day": "..."}'
metrics: [json_valid, key_accuracy]
splits: {train: 0.6, dev: 0.1, test: 0.3, seed: 0, max_train: 300, max_dev: 50, max_test: 150}
generation: {max_tokens: 96}
consistency: {enabled: false}
arms:
  - {type: zero_shot}
""")


def answers(out: Path, n: int = 500) -> None:
    rng = random.Random(5)
    rows = []
    for _ in range(n):
        product, city = rng.choice(PRODUCTS), rng.choice(CITIES)
        question = rng.choice([f"Where can I buy a {product} in {city}?",
                               f"What is a {product} used for, and is it worth it for someone in {city}?",
                               f"How should I clean a {product} after a trip to {city}?"])
        rows.append({"question": question, "answer": f"A {product} is sold in most shops in {city}."})
    write(out / "answers", rows, """\
name: short-answers
type: generation
data: {path: data.jsonl, input: question, target: answer}
instruction: Answer the question in one sentence.
metrics: [token_f1]
splits: {train: 0.6, dev: 0.1, test: 0.3, seed: 0, max_train: 300, max_dev: 50, max_test: 150}
generation: {max_tokens: 48}
consistency: {enabled: false}
arms:
  - {type: zero_shot}
""")


def write(directory: Path, rows: list[dict], task_yaml: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "data.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (directory / "task.yaml").write_text(task_yaml)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    routing(out)
    extraction(out)
    answers(out)
    print(f"wrote {out}/routing, {out}/extraction, {out}/answers")


if __name__ == "__main__":
    main()
