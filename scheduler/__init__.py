"""Queue domain: sweeps, jobs, claim/lease/reap, results (SQLAlchemy; never torch)."""
