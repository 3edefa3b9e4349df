"""Stand-ins for Flexiv's RDK with exactly its Python API: `v1` is flexivrdk 1.9.4.1, `v2` is 2.0.0. They drive
the simulated Rizons of drivers.flexiv.sim_controller, found with `discover_at("host:port")`, the one name the
real modules lack. Same names, enum values, signatures and exception types as the real wheels (checked by
tests/test_flexiv_conformance.py against them). As the RDK, they keep the robot's states and status in a local
cache the controller pushes to (the getters are local reads), send the [non-blocking] commands without
waiting after checking them locally, and wait for the controller on the [blocking] calls."""
