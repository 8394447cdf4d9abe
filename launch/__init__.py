"""Processes of the project on this machine: a free port, their environment, bounded waits,
stopping a process group (``launch.processes``), ``tenslora serve`` started and answering with
its tokens (``launch.server``) and a throwaway Postgres (``launch.postgres``).

One copy for everything that starts them: ``tenslora demo`` / ``tenslora run``
(``cli/local_cluster.py``), the tests, the benches, ``scripts/`` and ``tools/``. Torch-free; it
may import ``scheduler`` and ``protocol``, and only ``cli`` above it may import it.
"""
