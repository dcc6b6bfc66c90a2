"""``python -m tillvault``: the ``tillvault`` command."""

from tillvault.cli.main import main

main()
