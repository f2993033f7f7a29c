"""Ray Tune trainables, one module per task, and the parts they are built of."""
