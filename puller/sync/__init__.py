"""``pypull sync FILE``: the sync file (``file``) and running its entries (``run``).

A sync is copies chosen by a file: which tags of which source go to which target. The copying
itself is ``puller.copying``'s; what is sync's alone (reading the file, choosing an entry's
tags, what runs after an entry's copies) lives here.
"""
