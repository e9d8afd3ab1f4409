"""Sample-quality metrics (IS / FID / KID through torch-fidelity), diversity, mode coverage,
training-stability stats, the statistics of claims, and the evaluate stage's work."""
