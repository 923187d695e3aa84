"""The customer-support demo: short conversations with an online shop's assistant, generated from templates.

Two kinds of conversation, about 60/40: where is my order (each order, with its carrier and dates, made up at
random and asked about in one conversation only, so the test orders are facts no training conversation holds)
and questions on the shop's policies (a few fixed answers, asked in many wordings, so training sees them all).
Each row is a conversation in OpenAI's chat fine-tuning format; its last message, the assistant's reply, is
the target. The knowledge rows are what a retrieval arm searches: one record per order and one help-centre
article per policy. No real customer data: every fact is drawn from `random.Random(seed)`.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

CONVERSATIONS = 160
ORDER_SHARE = 0.6      # the rest ask about a policy
SHORT_SHARE = 0.25     # conversations of one customer turn; the others have three turns before the reply
REPEAT_SHARE = 0.15    # conversations by a customer who already had one
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
CARRIERS = ("UPS", "DHL", "FedEx", "USPS")
STATUSES = (("shipped", 0.5), ("processing", 0.2), ("delivered", 0.2), ("cancelled", 0.1))

# policy: (the one reply, the help-centre article stating it, the customer's questions asked in one turn). The
# articles avoid the words customers ask about orders with (my, can, you, check, status, parcel...), so that
# BM25 finds an order's record by its number rather than an article by those words.
POLICIES = {
    "returns": (
        "Returns are accepted within 30 days of delivery for a full refund.",
        "Help centre: returns. How long is the return policy? Returns are accepted within 30 days of delivery "
        "for a full refund. To send items back, start a return on the Orders page and print the free label.",
        ["How long do I have to return an item?", "Can I send back something I bought?",
         "What is your return policy?", "Is it too late to return a jacket I got three weeks ago?",
         "How many days do I have to send it back?", "Can I return a product if I don't like it?"]),
    "refund_time": (
        "Refunds reach your account within 5 business days after the return arrives.",
        "Help centre: refunds. How long does a refund take, how fast is the money back? Refunds reach your "
        "account within 5 business days after the return arrives. The money goes back to the card used to pay; "
        "refunded amounts show on the card statement.",
        ["How long does a refund take?", "When will I get my money back?",
         "I sent my return last week, when does the refund come?", "How fast do you refund?",
         "How many days until the refund shows on my card?", "When do I get refunded for a return?"]),
    "shipping_cost": (
        "Shipping is free on orders over $50 and costs $4.99 otherwise.",
        "Help centre: shipping costs. How much does shipping cost? Shipping is free on orders over $50 and "
        "costs $4.99 otherwise. The shipping fee, a delivery charge, shows at checkout before payment.",
        ["How much is shipping?", "Do you charge for delivery?", "Is shipping free?",
         "What does shipping cost?", "Is there a shipping fee on small orders?",
         "Do I pay for shipping if I spend $30?"]),
    "address_change": (
        "Address changes are possible on the Orders page until the order is dispatched.",
        "Help centre: changing the delivery address. How to change, update or fix a wrong address? Address "
        "changes are possible on the Orders page until the order is dispatched. After dispatch the street "
        "address stays as entered.",
        ["Can I change my delivery address?", "I moved, can I update the address on my order?",
         "How do I fix a wrong address on my order?", "Can my parcel go to a different address?",
         "I typed the wrong street, can I change it?", "Is it possible to edit the shipping address?"]),
    "warranty": (
        "Every product has a two-year warranty against manufacturing defects.",
        "Help centre: warranty. How long is the guarantee on products? Every product has a two-year warranty "
        "against manufacturing defects. If an item breaks, is broken or stops working, the warranty covers a "
        "repair or replacement.",
        ["Is there a warranty?", "My headphones stopped working after a year, are they covered?",
         "How long is the guarantee on your products?", "What if the item breaks?",
         "Do your products come with a warranty?", "Is a broken product covered?"]),
    "payment": (
        "We accept Visa, Mastercard, PayPal and Apple Pay.",
        "Help centre: payment methods. How to pay? We accept Visa, Mastercard, PayPal and Apple Pay. "
        "Credit cards and debit cards both work; gift cards and bank transfers do not.",
        ["Which payment methods do you accept?", "Can I pay with PayPal?", "Do you take Apple Pay?",
         "How can I pay for my order?", "Can I pay by credit card?", "What cards do you accept?"]),
}
POLICY_OPENERS = ["Hi, I have a question.", "Hello, can you help me with something?", "Hi there, quick question.",
                  "I need some help please.", "Hello, I have a question about my purchase.",
                  "Hey, I was wondering about something."]
POLICY_ASKS = ["Of course. What would you like to know?", "Sure, how can I help?",
               "Happy to help. What is your question?", "Yes, go ahead. What do you need?",
               "Sure. What can I help you with?"]

ORDER_OPENERS = ["Where is my order?", "Hi, my package hasn't arrived yet.", "Can you tell me the status of my order?",
                 "I ordered something last week and I'm still waiting.", "Has my order shipped yet?",
                 "Hello, I'd like to track my order.", "When will my parcel arrive?",
                 "I haven't received my order. Can you check?"]
ORDER_ASKS = ["Sure, what is your order number?", "I can check that. Could you give me your order number?",
              "Of course. What's the order number?", "Happy to help. Which order number is it?",
              "Let me look. Please tell me the order number."]
ORDER_NUMBERS = ["It's {n}.", "Order {n}.", "The number is {n}.", "{n}", "Sure, it's order {n}.",
                 "My order number is {n}."]
ORDER_SHORT = ["Where is order {n}?", "What's the status of order {n}?", "Can you check order {n} for me?",
               "Has order {n} shipped?", "When will order {n} arrive?", "Hi, any news on my order {n}?"]


def day(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]}"


def make_order(number: int, rng: random.Random) -> dict:
    """One order's facts: its status, carrier and the dates that go with the status."""
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    placed = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
    shipped = placed + timedelta(days=rng.randint(1, 3))
    return {"number": number, "status": status, "carrier": rng.choice(CARRIERS), "placed": placed,
            "shipped": shipped, "arrives": shipped + timedelta(days=rng.randint(2, 5))}


def order_reply(order: dict) -> str:
    """The house form of an order's status: one of four fixed sentences."""
    n, carrier = order["number"], order["carrier"]
    if order["status"] == "shipped":
        return f"Order {n} was shipped by {carrier} on {day(order['shipped'])} and should arrive on " \
               f"{day(order['arrives'])}."
    if order["status"] == "processing":
        return f"Order {n} is being packed and ships on {day(order['shipped'])}."
    if order["status"] == "delivered":
        return f"Order {n} was delivered by {carrier} on {day(order['arrives'])}."
    return f"Order {n} was cancelled on {day(order['placed'])} and has been refunded in full."


def order_record(order: dict) -> str:
    """The order as the shop's records hold it: the facts of the reply, not its wording."""
    n, carrier = order["number"], order["carrier"]
    if order["status"] == "shipped":
        return f"Order {n}: shipped by {carrier} on {day(order['shipped'])}; expected delivery " \
               f"{day(order['arrives'])}."
    if order["status"] == "processing":
        return f"Order {n}: being packed; ships on {day(order['shipped'])}."
    if order["status"] == "delivered":
        return f"Order {n}: delivered by {carrier} on {day(order['arrives'])}."
    return f"Order {n}: cancelled on {day(order['placed'])}; refunded in full."


def plan(seed: int = 0) -> list[dict]:
    """The conversations' facts, drawn once for both the conversations and the knowledge: each one's kind,
    customer, length, and its order (a distinct number) or its policy."""
    rng = random.Random(seed)
    orders = round(CONVERSATIONS * ORDER_SHARE)
    numbers = rng.sample(range(1000, 10000), orders)
    kinds = [make_order(n, rng) for n in numbers] + [None] * (CONVERSATIONS - orders)
    policies = list(POLICIES)
    customers = rng.sample(range(1, 10000), CONVERSATIONS)
    plans, seen = [], []
    for i, order in enumerate(kinds):
        customer = rng.choice(seen) if seen and rng.random() < REPEAT_SHARE else f"C{customers[i]:04d}"
        seen.append(customer)
        plans.append({"order": order, "policy": None if order else policies[i % len(policies)],
                      "customer": customer, "short": rng.random() < SHORT_SHARE})
    rng.shuffle(plans)
    return plans


def order_messages(order: dict, short: bool, rng: random.Random) -> list[dict]:
    n = order["number"]
    if short:
        turns = [rng.choice(ORDER_SHORT).format(n=n)]
    else:
        turns = [rng.choice(ORDER_OPENERS), rng.choice(ORDER_ASKS), rng.choice(ORDER_NUMBERS).format(n=n)]
    return _chat(turns + [order_reply(order)])


def policy_messages(policy: str, short: bool, rng: random.Random) -> list[dict]:
    reply, _, questions = POLICIES[policy]
    question = rng.choice(questions)
    turns = [question] if short else [rng.choice(POLICY_OPENERS), rng.choice(POLICY_ASKS), question]
    return _chat(turns + [reply])


def _chat(turns: list[str]) -> list[dict]:
    """Turns alternating user and assistant, the user first."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(turns)]


def support_rows(seed: int = 0) -> list[dict]:
    """The conversations: {"messages": [...], "customer": ...}, the last message the reply to learn."""
    rng = random.Random(f"{seed}-words")  # the wording, apart from the facts
    rows, asked = [], set()
    for item in plan(seed):
        if item["order"]:
            messages = order_messages(item["order"], item["short"], rng)
        else:  # no two conversations alike: the same question in train and test would be leakage
            messages = policy_messages(item["policy"], item["short"], rng)
            while json.dumps(messages[:-1]) in asked:
                messages = policy_messages(item["policy"], False, rng)
        asked.add(json.dumps(messages[:-1]))
        rows.append({"messages": messages, "customer": item["customer"]})
    return rows


def knowledge_rows(seed: int = 0) -> list[dict]:
    """The passages retrieval searches: every order's record, then each policy's help-centre article."""
    orders = sorted((p["order"] for p in plan(seed) if p["order"]), key=lambda o: o["number"])
    return [{"text": order_record(o)} for o in orders] + [{"text": article} for _, article, _ in POLICIES.values()]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)
