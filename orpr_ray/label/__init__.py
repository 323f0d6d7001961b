"""Simulation-augmented OR labels: candidate evaluation, the knapsack, turnover calibration."""
