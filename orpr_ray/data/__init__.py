"""Demand panels and unit attributes: contracts, loaders, writer, synthetic catalogue, importers."""
