"""sympy's tensor module loaded only when something uses it: a start-up lever of a process
gradcalc owns (cli/__init__.py installs it; a library caller's sympy is never touched).

sympy's Add.flatten runs `from sympy.tensor.tensor import TensExpr, TensAdd` at every sum,
so the first sum of a process imports sympy.tensor.tensor and sympy.combinatorics (22-36 ms
here after `import sympy`; issue 15's figure 2·fresh went from 0.85x to 0.77x its floor
without them) only to ask whether a term is a tensor expression. Until something asks that
module for any other name, a stand-in answers those two with classes of which no object
exists (no tensor can be made without the real module), so every isinstance test in
Add.flatten gives the real module's answer. Any other name loads the real module, which
then replaces the stand-in for good (Add.flatten imports it afresh at every sum, so from
then on it tests against the real classes).
"""
from __future__ import annotations

import sys
import types

NAME = "sympy.tensor.tensor"


class _TensExpr:
    """Never instantiated: a tensor expression needs the real module."""


class _TensAdd(_TensExpr):
    """Never instantiated, as _TensExpr."""


class _StandIn(types.ModuleType):
    """The module until its real self is loaded; after that (to whoever kept it, as `from
    sympy.tensor.tensor import A, TensExpr` keeps it for TensExpr) the real one's names."""

    @property
    def TensExpr(self):
        return self._real("TensExpr", _TensExpr)

    @property
    def TensAdd(self):
        return self._real("TensAdd", _TensAdd)

    def _real(self, name, stand_in):
        real = sys.modules.get(NAME)
        return stand_in if real is None or real is self else getattr(real, name)

    def __getattr__(self, name):
        if name.startswith("__"):       # the import system's probes (__path__, __spec__, ...)
            raise AttributeError(name)
        if sys.modules.get(NAME) is self:
            del sys.modules[NAME]
        import sympy.tensor.tensor  # noqa: F401 - the real module, in the stand-in's place
        return getattr(sys.modules[NAME], name)


def install():
    """Put the stand-in in place, unless sympy's tensor module is loaded already."""
    if NAME not in sys.modules:
        sys.modules[NAME] = _StandIn(NAME)
