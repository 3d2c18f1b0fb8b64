"""The local store: an OCI image layout on disk (blobs, index, locks and leases), its
verification and its pruning."""
