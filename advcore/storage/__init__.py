"""Files in and out: datasets (`data`), images (`images`), preprocessing photos for a model
(`preprocess`), atomic writes and JSON (`files`), and the run store (`runs`). Only `preprocess` imports
TensorFlow."""
