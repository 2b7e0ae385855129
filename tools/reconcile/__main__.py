"""``python -m tools.reconcile``: see the package docstring."""

from tools.reconcile import main

main()
