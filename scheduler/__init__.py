"""The queue domain: sweeps, jobs, leases, results. SQLAlchemy; never torch."""
