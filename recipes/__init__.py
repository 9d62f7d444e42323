"""recipes stage of the landmark pipeline."""
