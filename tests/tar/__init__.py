"""Tests of puller.tar: the one tar reader and its rules, compression, the writer."""
