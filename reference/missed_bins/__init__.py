"""Report a missed bin: the reference service of ``bin-collections``, built on the SDK alone.

Each council that joins gets the pages in its own brand, at ``/<council slug>/`` (or at its own
verified domain); each report is stored in that council's tenancy, logged in as its own role, and
reported as usage in the same transaction; a council that leaves has its pages end.
"""
