"""riskpipe's fraud validator: a FastAPI service scoring transactions with explainable rules.

Run it with ``python -m validator``; build the app in code with
:func:`validator.app.create_app`; the rules live in ``validator/rules.yaml``
(see ``validator/README.md``).
"""
