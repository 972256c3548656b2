"""Baselines trained and scored inside the framework (the paper's comparison): CycleGAN and Toonify."""
