"""quant stage of the landmark pipeline."""
