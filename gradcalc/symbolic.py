"""Symbolic cross-check (placeholder until the sympy check lands)."""
from __future__ import annotations


def check(result, grads_once, *, rtol=None, atol=None, limits=None):
    return {"passed": None, "skipped": "the symbolic check is not implemented yet"}
