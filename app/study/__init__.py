"""The Augmentation study page's parts: the study form and its results table."""
