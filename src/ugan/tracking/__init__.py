"""MLflow: the per-stage run, the offline spool, the pipeline parent run, the champion
generator. Depends on ugan.core only."""
