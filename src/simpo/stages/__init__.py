"""One module per `simpo` verb; stages read and write plain files and never import one another,
except `pipeline`, which runs them in order. What two stages share lives in the folders beside them."""
