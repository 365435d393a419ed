"""Empirical stability: twins on S^(ij), model/loss stability, smoothness, error decomposition,
and the comparison of measurements with the theory's rates."""
