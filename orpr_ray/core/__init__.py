"""Pieces every stage shares: the strict config base, input errors, atomic artifacts and manifests."""
