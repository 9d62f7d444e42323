"""export stage of the landmark pipeline."""
