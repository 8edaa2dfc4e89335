"""Active inference as probabilistic programs: free energy, inference, planning and diagnostics.

The engine knows nothing of servers or radios; models are plain Pyro callables.
"""
