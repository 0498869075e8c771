"""Recipes as data: the training recipe (`recipe`) and the pipeline recipe with its stage sections (`pipeline`)."""
