"""Checkpoint placement, the one both halves use: who holds whose in-memory checkpoint, and the odds.

`registry` names every strategy and what it needs (no numpy: the schema and help texts read it);
`layout` builds a placement (`build_placement`); `probability` gives exact recovery odds (closed forms,
counting, enumeration) and `sampling` enumeration and Monte Carlo for any placement and failure mode.
The simulator evaluates these placements and the real runner replicates with them.
"""
