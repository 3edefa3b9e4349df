"""Cameras: capture with a timestamp on every frame."""
