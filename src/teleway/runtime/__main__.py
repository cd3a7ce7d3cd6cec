"""`python -m teleway.runtime` is the `teleway` command."""

from teleway.runtime.cli import main

main(prog_name="teleway")
