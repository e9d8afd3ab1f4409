"""The top layer: stage entry points, the ugan command, Prefect flows."""
