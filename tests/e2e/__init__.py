"""End to end: the ``pypull`` command against the real registry (and the fault-injecting one)."""
