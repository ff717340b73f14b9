"""The storage node: owns storage pools on local disk and serves chunks and manifests over HTTP."""
