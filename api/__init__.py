"""FastAPI service: routes, auth, dashboard (imports ``scheduler``)."""
