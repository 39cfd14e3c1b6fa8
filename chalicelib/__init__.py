"""hexcast: geo- and context-aware push notifications on AWS Lambda."""

__version__ = "0.1.0"
