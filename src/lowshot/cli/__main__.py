"""`python -m lowshot.cli`: the same as the `lowshot` command."""

from lowshot.cli import main

main()
