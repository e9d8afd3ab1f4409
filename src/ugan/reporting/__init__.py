"""The report: inputs, the paper's claims, markdown, figures, assembly."""
