"""orpr-ray: OR-guided pretrain-then-reinforce replenishment on Ray."""
__version__ = "0.1.0"
