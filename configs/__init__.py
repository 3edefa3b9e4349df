"""Built-in robot setups, shipped as package data so `--robot so100` works from any install."""
