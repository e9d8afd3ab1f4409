"""Figures of generated samples, written atomically as PNG."""
