"""What the tests and the benches share: free ports, waiting, the real server, a real Postgres.

Defined once here; ``bench/`` imports it too (run from the repository root, or with the root on
``sys.path``). Nothing in the product imports it.
"""
