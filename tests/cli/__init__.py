"""Tests of the command line itself: usage errors, help, a bad argument; no registry."""
