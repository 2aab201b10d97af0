"""`python -m publisher` is the `publisher` command."""

from publisher.app.cli.main import main

main()
