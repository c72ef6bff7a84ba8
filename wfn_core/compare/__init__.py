"""What WFN is compared with and deployed as: per-layer and per-network quantisers (``baselines``),
the entropy-coded file (``export``) and multiplier-free inference (``shiftadd``)."""
