"""The policy as an HTTP service on Ray Serve, its Python client and CLI (docs/SERVING.md)."""
