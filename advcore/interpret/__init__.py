"""What robust models gain: maximal class activations and class traversal (`gradient_ascent`),
adversarial explanations and ARA (`explain`), the perceptual-alignment score (`alignment`) and
labelled videos (`video`)."""
