"""The core every mode shares: config, Robot interface, rig, control loop, safety, sessions."""
