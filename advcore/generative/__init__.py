"""Class-conditional GANs: the AC-GAN and its files (`acgan`), its training run (`gan_training`),
unrestricted adversarial examples by latent search (`unrestricted`) and the augmentation study
(`study`)."""
