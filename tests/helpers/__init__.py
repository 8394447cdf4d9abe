"""What only the tests share: the real server with a token per role (``server``).

Ports, waits, the server process and Postgres are ``launch``'s, shared with the product, the
benches, ``scripts/`` and ``tools/``.
"""
