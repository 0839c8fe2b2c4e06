"""Embedded PostgreSQL and Kafka-compatible broker for tests and local runs.

Import from the submodules (``stack.postgres``, ``stack.broker``,
``stack.ports``); this package module stays empty so importing one does not
pull in the other's client libraries.
"""
