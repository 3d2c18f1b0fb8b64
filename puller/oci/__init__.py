"""Value types of the OCI image and distribution specs: digests, references, manifests.
Parsing and printing only: no I/O."""
