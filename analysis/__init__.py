"""Reading finished or running experiments from their files (never needs Ray to be running)."""
