"""One module per recipe, each readable top to bottom: setup -> loop -> save."""
