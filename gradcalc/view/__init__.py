"""What a person sees: the human view of a Result (what `gradcalc` prints without --json), the
--graph and --dot pictures of the autograd graph, the fit's report, and progress on stderr.

Layers, each importing only those before it: plain (styles, glyphs, a page of plain lines),
style (the rich console), numbers (numbers and arrays as text), jacobian and graph, human
(the View and `render`). The fit's report draws on plain, numbers and plot alone, with no
rich. This package file imports none of them: `--dot` alone loads no human view.
"""
