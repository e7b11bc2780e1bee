"""The Interpret and Compare pages' parts: activations, traversals, explanations and profiles."""
