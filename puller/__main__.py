"""``python -m puller``: the same as the ``pypull`` command."""

from .cli.main import run

if __name__ == "__main__":
    run()
