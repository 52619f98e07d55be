"""The HTTP API: the FastAPI app, its routes, request and response models, auth and limits."""
