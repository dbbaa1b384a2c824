"""Calibration sequences and the time-tag processing layer."""
