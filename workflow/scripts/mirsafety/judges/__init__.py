"""Judges: each turns (behaviour, answer) pairs into safe / unsafe / error verdicts."""
