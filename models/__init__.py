"""Classifiers and their training: losses, the MLP (no hidden layer: the linear classifier), the SGD loop,
the validation search, solvers, figures and the studies' toy problems."""
