"""Hostile input: a registry, proxy, layer tar, archive or store file written by an attacker."""
