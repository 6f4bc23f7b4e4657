"""Pure plotting functions (one module per topic); notebooks build every figure through them."""
