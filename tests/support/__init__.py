"""What the tests share: the fault-injecting registry and helpers. No tests here."""
