"""Work that outlives any page: starting `python -m advcore` processes in sessions of their own
(`processes`), and the training scheduler that owns the run queue (`scheduler`). No TensorFlow here."""
