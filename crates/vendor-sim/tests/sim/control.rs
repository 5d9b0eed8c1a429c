// tests for control
