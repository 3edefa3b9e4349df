"""Driving arms from a remote policy server: the openpi protocol, observation and action mapping, chunk scheduling."""
