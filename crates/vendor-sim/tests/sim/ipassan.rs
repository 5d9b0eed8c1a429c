// tests for ipassan
