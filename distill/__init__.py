"""distill stage of the landmark pipeline."""
