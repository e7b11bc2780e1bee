"""The Evaluate page's parts: the evaluation form and the job's progress and results views."""
