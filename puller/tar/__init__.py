"""Tar streams: the one reader of layer and archive tars (the hostile-input bounds passed in by
its caller), the writer of save's and export's tars, and gzip/zstd compression."""
