"""Generative models declared as Pyro programs over server states, observations and policies.

Models are built from plain sizes and priors; they never import the environment.
"""
