"""Teaching helpers around the method: figures (``plots``), ipywidgets (``widgets``), the first pass
spelled out (``explain``), notebook set-up and execution (``notebook``), the α × δ sweep (``sweep``),
claims a notebook checks (``claims``) and the claim sets with their bounds (``checks``).

Nothing in the core method imports from here.
"""
