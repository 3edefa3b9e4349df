"""Driving arms from a remote policy server: the openpi protocol and its checked wire format, observation
and action mapping, chunk scheduling."""
