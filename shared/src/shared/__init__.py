"""Switchboard's shared package: contracts, messaging, database, logging, settings and test helpers."""
