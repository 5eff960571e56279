"""Collectives over the chips of this process (libh20ccl, include/h20/ccl.h).

    clique = h20.ccl.Clique([0, 1, 2, 3])        # one rank per device
    out = clique.all_reduce([a0, a1, a2, a3])    # one h20 array per rank, in rank order

Clique methods issue every rank's part from the calling thread (one group); a rank's Comm
(``clique[r]``) issues that rank's part only, for one thread per rank.
"""

from . import _h20

Clique = _h20.ccl.Clique
Comm = _h20.ccl.Comm
version = _h20.ccl.version

__all__ = ["Clique", "Comm", "version"]
