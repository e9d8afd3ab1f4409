"""Typed params (schema), loading with errors that name the key, cross-checks, profiles."""
