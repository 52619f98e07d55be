"""The fleet: cars, driving modes, the safety driver, on-board triggers and drive-log writing."""
