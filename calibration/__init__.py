"""Calibration: LeRobot-compatible calibration files and the raw-to-units mapping."""
