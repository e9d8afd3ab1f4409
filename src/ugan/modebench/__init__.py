"""Mode-coverage benchmarks of the BEGAN / RFGAN / GAAN papers, run by the `modes` stage."""
