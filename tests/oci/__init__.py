"""Tests of puller.oci: digests, references, manifests (pure, table-driven)."""
