"""advcore: the AdvLab core library; no Streamlit here.

Subpackages by concern: `attacks`, `training`, `evaluation`, `interpret`, `generative`, `storage`
(data, images, files, runs) and `cli`. At the top: `models` (builders, safe `.keras` files),
`architectures` (the built-in networks' names, without TensorFlow) and `graphs` (compiled graphs
cached per model).
"""
