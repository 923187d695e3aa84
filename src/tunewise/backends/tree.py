"""Token trees: sequences that share prefixes, run once as one packed sequence with a tree attention mask.

Scoring a prompt's labels is a tree: the prompt, then every label's tokens as branches (labels that share
first tokens share those branches). Prompts that share a beginning (the instruction, the system text, the
same first examples) join the same tree too. Each token is a node; a node attends to its ancestors and
itself, and sits at the position its depth gives it, so its hidden state is exactly the one a separate
forward pass over its own path would give — while every shared token runs once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tree:
    """Nodes in insertion order: a node's parent always comes before it."""
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)   # -1: a root (its parent is the shared prefix, if any)
    depths: list[int] = field(default_factory=list)
    _children: dict[tuple[int, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, tokens: list[int], under: int = -1) -> int:
        """The node ending the path `tokens` below node `under` (-1: the roots), made where missing."""
        node = under
        for token in tokens:
            child = self._children.get((node, token))
            if child is None:
                child = len(self.tokens)
                self._children[(node, token)] = child
                self.tokens.append(token)
                self.parents.append(node)
                self.depths.append(self.depths[node] + 1 if node >= 0 else 0)
            node = child
        return node

    def new_nodes(self, tokens: list[int], under: int = -1) -> int:
        """How many nodes `add(tokens, under)` would make."""
        node = under
        for i, token in enumerate(tokens):
            node = self._children.get((node, token), -2)
            if node == -2:
                return len(tokens) - i
        return 0

    def ancestry(self) -> np.ndarray:
        """allowed[j, i]: node j may attend to node i (i is j or one of its ancestors)."""
        n = len(self.tokens)
        allowed = np.zeros((n, n), dtype=bool)
        for j, parent in enumerate(self.parents):
            if parent >= 0:
                allowed[j] = allowed[parent]
            allowed[j, j] = True
        return allowed


@dataclass
class Read:
    """One log-probability to read: choice `choice` of request `item` has `token` next after `node`."""
    item: int
    choice: int
    node: int
    token: int


@dataclass
class Pack:
    tree: Tree = field(default_factory=Tree)
    reads: list[Read] = field(default_factory=list)
    items: list[int] = field(default_factory=list)

    def cost(self, suffix: list[int], choices: list[list[int]]) -> int:
        """Nodes one more item adds (about: shared label branches of a repeated prompt count more than once)."""
        new = self.tree.new_nodes(suffix)
        if new:
            return new + _trie_size([c[:-1] for c in choices])
        end = _find(self.tree, suffix)
        return sum(self.tree.new_nodes(c[:-1], end) for c in choices)

    def add(self, item: int, suffix: list[int], choices: list[list[int]]) -> None:
        """The item's prompt (after the shared prefix) as a path, each choice as a branch below its end.

        A choice's last token is only read, never run: single-token labels add no nodes at all."""
        end = self.tree.add(suffix)
        self.items.append(item)
        for j, choice in enumerate(choices):
            node = end
            for t, token in enumerate(choice):
                self.reads.append(Read(item, j, node, token))
                if t + 1 < len(choice):
                    node = self.tree.add([token], node)


def _find(tree: Tree, tokens: list[int]) -> int:
    node = -1
    for token in tokens:
        node = tree._children[(node, token)]
    return node


def _trie_size(paths: list[list[int]]) -> int:
    return len({tuple(p[:i + 1]) for p in paths for i in range(len(p))})


def plan(suffixes: list[list[int]], choices: list[list[list[int]]], budget: int) -> list[Pack]:
    """Requests grouped into packs of at most `budget` nodes (one request at least), in lexical order of
    their prompts so that neighbours, which share the most, land in the same pack."""
    order = sorted(range(len(suffixes)), key=lambda i: suffixes[i])
    packs = [Pack()]
    for i in order:
        pack = packs[-1]
        if pack.items and len(pack.tree) + pack.cost(suffixes[i], choices[i]) > budget:
            pack = Pack()
            packs.append(pack)
        pack.add(i, suffixes[i], choices[i])
    return [p for p in packs if p.items]
