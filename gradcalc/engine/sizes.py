"""What a request to the engine will cost, counted before anything is allocated, and the
per-program memo that keeps such derived facts.

The API checks its memory limits with these numbers before it asks for any value; the
economies read the same counts to decide whether a lean forward pays. Nothing here computes
a value or a gradient.
"""
from __future__ import annotations


def remembered(graph, key, make):
    """`make()` computed once per compiled program and key, kept in `graph.memo` (shared by
    every rebinding of the program to new leaf values, so a JSON Lines stream pays once per
    distinct program)."""
    memo = graph.memo
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = make()
    return hit


def elements(graph, output: int) -> tuple:
    """(elements of every node up to `output`, of those that require grad)."""
    def count():
        nodes = graph.nodes[: output + 1]
        return sum(n.size for n in nodes), sum(n.size for n in nodes if n.requires_grad)
    return remembered(graph, ("elements", output), count)


def largest(graph, output: int) -> int:
    """Elements of the largest value up to `output`, remembered per program."""
    return remembered(graph, ("largest", output),
                      lambda: max(n.size for n in graph.nodes[: output + 1]))


def jacobian_entries(graph, output: int, leaf_ids) -> int:
    nodes = graph.nodes
    return nodes[output].size * sum([nodes[i].size for i in leaf_ids])


def jacobian_memory(graph, output: int) -> int:
    """Bytes of the batched backward: an out-sized batch of cotangents at every node that
    requires grad (an upper bound)."""
    return 2 * graph.nodes[output].size * elements(graph, output)[1] * graph.dtype.itemsize
