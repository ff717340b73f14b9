"""Storage pools on a local filesystem: dedup and standard chunk stores, manifests, capacity.

The storage node (``services/dedup``) serves these over HTTP; the disk CLI opens a pool
directory directly for disaster recovery, when no node runs. Every file is written by
temp file + fsync + rename, so a crash never leaves a partial chunk or manifest.
"""
