"""Training classifiers: the run config (`config`, light), the Keras `train_step` and data pipeline
(`trainer`), a run's process from start to finish (`runner`), seed 004's Lipschitz penalty
(`lipschitz`) and device strategies (`distribute`)."""
