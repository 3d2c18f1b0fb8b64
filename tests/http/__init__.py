"""Tests of puller.http against crafted raw servers on loopback."""
