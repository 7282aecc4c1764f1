"""`python -m infinitecontext` is the same as `icx`."""

from infinitecontext.cli import main

main()
