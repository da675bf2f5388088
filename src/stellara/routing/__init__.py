"""Which provider answers: public model names → targets, strategies, breakers, retries."""
