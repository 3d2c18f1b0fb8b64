"""Tests of puller.store: the layout, leases and locks, verify, prune."""
