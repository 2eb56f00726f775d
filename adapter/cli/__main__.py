"""`python -m adapter.cli ...`, as the tests and benchmarks start it."""

from adapter.cli.main import main

main()
