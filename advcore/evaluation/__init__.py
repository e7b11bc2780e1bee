"""Measuring robustness: accuracy and robustness curves (`robustness`), evaluation plans
(`plans`), the background worker that runs queued evaluations and profiles (`worker`), a model's
profile for the Compare page (`profile`) and the bundled models' cards (`cards`)."""
