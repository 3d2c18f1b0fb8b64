"""Tar streams: the one reader of layer and archive tars, with the hostile-input policy passed
in by its caller."""
