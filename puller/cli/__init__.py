"""The ``pypull`` command: argument parsing, one module per command group, and the renderers
that turn events into terminal or JSON output."""
