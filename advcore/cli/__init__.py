"""`python -m advcore ...`: the parser and the attack/evaluate/worker commands (`main`), the
training commands (`train_commands`), the interpretation commands (`interpret_commands`) and shared
argument types (`parsing`)."""
