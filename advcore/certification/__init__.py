"""Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019): the noisy class
counts of a base classifier, drawn on the device (`sampling`), and the statistics that turn them
into smoothed predictions and certified L2 radii (`smoothing`)."""
