"""tenslora-worker: GPU probe, Ray actors, job child process, API client."""
