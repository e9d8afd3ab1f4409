"""Dataset sources and the prepared-file format."""
