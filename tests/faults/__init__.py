"""The fault suite of issue 12: hostile and damaged input, table-driven (see docs/reliability.md)."""
