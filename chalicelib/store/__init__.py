"""Persistence: ports (Protocols), DynamoDB adapters and in-memory fakes."""
