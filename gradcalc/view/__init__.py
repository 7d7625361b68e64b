"""The human view of a Result: what `gradcalc` prints without --json, and the --graph and
--dot pictures of the autograd graph.

Layers, each importing only those before it: style (console, glyphs, styles), numbers
(numbers and arrays as text), jacobian and graph, human (the View and `render`). This
package file imports none of them: `--dot` alone loads no human view.
"""
