"""The bottom layer: atomic file io, paths, user-actionable errors, runtime (device, seeding,
progress), digests, markdown tables. Imports nothing else from ugan."""
