"""The wire: the words both sides share (``protocol.vocabulary``), the HTTP API's request/response
models (``protocol.models``), ``SchedulerPort`` (``protocol.port``) and the one typed client of the
API (``protocol.client``). Imports neither FastAPI, SQLAlchemy nor torch."""
