"""``python -m margin`` runs the CLI."""

from .cli import main

main()
