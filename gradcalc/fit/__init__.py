"""The numerical core of `gradcalc fit`: torch's optimizers, Levenberg–Marquardt, batches.

optimizers.py steps parameters as PyTorch 2.13 does, lm.py solves least squares and reports
curve_fit's uncertainties, batches.py cuts data into SPEC 10's mini-batches. Nothing here
parses, compiles or differentiates an expression, and nothing imports the command line.
"""
