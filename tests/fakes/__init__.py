"""Fakes at the network edge: local servers that answer as the documented Azure REST APIs do."""
