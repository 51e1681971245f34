"""Swift access for one project's account and verifiable Dynamic Large Objects.

Adapters only: no image format logic lives here.

- :mod:`rax_glance.swift.access`: connections that act for exactly one project.
- :mod:`rax_glance.swift.names`: container/object name rules.
- :mod:`rax_glance.swift.dlo`: write, read-with-verification, check and delete DLOs.
- :mod:`rax_glance.swift.errors`: typed errors, and their mapping to glance_store exceptions.
"""
