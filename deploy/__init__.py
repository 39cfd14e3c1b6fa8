"""Cloud deployment: the pinned-runtime Chalice CLI, the rendered resource
templates, ``make package`` and ``make deploy``. Not deployed, never imported
by ``app.py`` or ``chalicelib/``."""
