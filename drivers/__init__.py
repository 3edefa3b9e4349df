"""One sub-package per hardware family; each exports FAMILY (robot_runtime.family.ArmFamily)."""
