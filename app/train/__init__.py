"""The Train page's parts: the classifier and GAN forms, and the run table and progress views."""
