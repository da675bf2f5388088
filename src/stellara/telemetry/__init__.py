"""What the gateway tells the outside world: events, metrics, logs."""
