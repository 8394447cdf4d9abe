"""The HTTP API's contract: its request/response models (``protocol.models``) and the one typed
client that talks to it (``protocol.client``). Imports neither FastAPI, SQLAlchemy nor torch."""
