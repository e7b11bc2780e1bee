"""The Playground page's parts: the attack's results and the unrestricted (GAN) tab."""
