"""Graph display: the nodes reachable from the output (placeholder)."""
from __future__ import annotations


def reachable(graph, output):
    seen = {output}
    for eq in reversed(graph.nodes[: output + 1]):
        if eq.id in seen:
            seen.update(eq.inputs)
    return [eq for eq in graph.nodes[: output + 1] if eq.id in seen]


def to_dot(result):
    graph = result.graph
    lines = ["digraph gradcalc {"]
    for eq in reachable(graph, result.output_id):
        label = eq.torch or eq.kind
        if eq.kind == "leaf":
            label = f"{eq.name}\\nAccumulateGrad"
        lines.append(f'  n{eq.id} [label="{label}"];')
        for i in eq.inputs:
            lines.append(f"  n{i} -> n{eq.id};")
    lines.append("}")
    return "\n".join(lines) + "\n"
