"""``python -m tools.chaos``: see the package docstring."""

from tools.chaos import main

main()
