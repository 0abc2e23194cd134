"""`python -m workers.cli ...` runs the `backfire` command."""

from workers.cli.app import main

main()
