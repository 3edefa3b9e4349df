"""Recorders: datasets and logs written off the control loop."""
