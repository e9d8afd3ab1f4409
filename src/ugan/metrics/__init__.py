"""Sample-quality metrics (IS / FID / KID through torch-fidelity) and training-stability stats."""
