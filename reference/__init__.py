"""Reference shared services: built on :mod:`tenancy_sdk` alone, as a service team would."""
