"""The block data path: extent planning, chunk records, manifests, RBD and pool adapters.

Modules are imported directly (``edgeback_blocks.chunk``, ``edgeback_blocks.manifest``)
so that the pure format layer never pulls in a driver such as ``rbd``.
"""
