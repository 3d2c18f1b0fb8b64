"""Tests of puller.registry: auth, credentials, the registry client, uploads, retries."""
